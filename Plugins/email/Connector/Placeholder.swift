enum EmailConnectorPlaceholder {}
