enum EmailTransportPlaceholder {}
