enum EmailMIMEPlaceholder {}
