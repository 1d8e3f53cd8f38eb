/// How an SMS body is encoded on the air and how many parts (segments) it takes.
///
/// An SMS carries 140 bytes. Text that fits the GSM 03.38 alphabet is sent as
/// GSM-7 (7-bit septets: 160 per single message); anything else is sent as
/// UCS-2 (16-bit units: 70 per single message). A longer message is split into
/// parts that each give up room to a concatenation header (UDH), leaving 153
/// septets or 67 units per part. Characters of the GSM-7 extension table
/// (`^ { } \ [ ~ ] |`, `€` and form feed) are sent as an escape plus the
/// character, so they count two septets, and an escape pair is never split
/// across two parts. In UCS-2, a character outside the Basic Multilingual Plane
/// (most emoji) is a UTF-16 surrogate pair: two units, never split either.
///
/// This is what carriers (and Twilio, whose `num_segments` it matches) charge
/// for; the SMS connector refuses messages longer than its `max_segments`
/// setting before calling the API.
public enum SMSSegments {
    /// The on-air encoding of a message.
    public enum Encoding: String, Sendable, Equatable {
        /// The GSM 03.38 7-bit default alphabet (with its extension table).
        case gsm7 = "GSM-7"
        /// UCS-2 (in practice UTF-16): anything outside the GSM alphabet.
        case ucs2 = "UCS-2"
    }

    /// The encoding, the number of segments and the size in encoding units of one message body.
    public struct Result: Sendable, Equatable, CustomStringConvertible {
        /// GSM-7 or UCS-2.
        public let encoding: Encoding
        /// Number of SMS parts the body is sent as (1 for an empty body).
        public let segments: Int
        /// Size in the encoding's units: septets for GSM-7 (extension characters count 2),
        /// UTF-16 code units for UCS-2 (emoji outside the BMP count 2).
        public let units: Int

        /// A result with these values.
        public init(encoding: Encoding, segments: Int, units: Int) {
            self.encoding = encoding
            self.segments = segments
            self.units = units
        }

        /// `3 segment(s) of GSM-7 (400 septets)`.
        public var description: String { "\(segments) segment(s) of \(encoding.rawValue) (\(units) \(encoding == .gsm7 ? "septets" : "UTF-16 units"))" }
    }

    /// Septets of a single-part GSM-7 message.
    public static let gsm7Single = 160
    /// Septets per part of a multi-part GSM-7 message.
    public static let gsm7PerPart = 153
    /// Units of a single-part UCS-2 message.
    public static let ucs2Single = 70
    /// Units per part of a multi-part UCS-2 message.
    public static let ucs2PerPart = 67

    /// Computes the encoding, segments and units of `text`.
    public static func compute(_ text: String) -> Result {
        // Sizes of each character in the chosen encoding: the atoms that cannot be split.
        var septets: [Int] = []
        septets.reserveCapacity(text.unicodeScalars.count)
        var isGSM = true
        for scalar in text.unicodeScalars {
            if gsmBasic.contains(scalar.value) {
                septets.append(1)
            } else if gsmExtension.contains(scalar.value) {
                septets.append(2)
            } else {
                isGSM = false
                break
            }
        }
        if isGSM {
            return Result(encoding: .gsm7, segments: pack(septets, single: gsm7Single, perPart: gsm7PerPart), units: septets.reduce(0, +))
        }
        let units = text.unicodeScalars.map { $0.value > 0xFFFF ? 2 : 1 }
        return Result(encoding: .ucs2, segments: pack(units, single: ucs2Single, perPart: ucs2PerPart), units: units.reduce(0, +))
    }

    /// Number of parts for atoms of the given sizes: one part when everything fits `single`,
    /// otherwise parts of at most `perPart` units, filled greedily without splitting an atom.
    static func pack(_ atoms: [Int], single: Int, perPart: Int) -> Int {
        let total = atoms.reduce(0, +)
        if total <= single { return 1 }
        var parts = 1
        var used = 0
        for size in atoms {
            if used + size > perPart {
                parts += 1
                used = 0
            }
            used += size
        }
        return parts
    }

    /// The GSM 03.38 default alphabet, as Unicode scalar values (the escape 0x1B excluded).
    static let gsmBasic: Set<UInt32> = {
        let table = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
        return Set(table.unicodeScalars.map(\.value))
    }()

    /// The GSM 03.38 extension table: each is sent as escape + character (two septets).
    static let gsmExtension: Set<UInt32> = {
        let table = "\u{0C}^{}\\[~]|€"
        return Set(table.unicodeScalars.map(\.value))
    }()
}
