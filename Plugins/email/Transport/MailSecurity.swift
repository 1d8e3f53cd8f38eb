/// How a mail connection is protected.
public enum MailSecurity: String, Sendable {
    /// Plain text. Refused by the connector unless explicitly configured (e.g. a local relay).
    case none
    /// Connect in plain text, then upgrade with STARTTLS before anything else; fails when the server does not offer it.
    case starttls
    /// Implicit TLS from the first byte (imaps on 993, smtps on 465).
    case tls
}
