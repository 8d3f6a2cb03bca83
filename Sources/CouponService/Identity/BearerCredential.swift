import Hummingbird

extension Request {
    /// The credential of `Authorization: Bearer <credential>`: the scheme matched without regard to
    /// case (RFC 9110 section 11.1), then one or more spaces, then a `b64token` (RFC 6750 section
    /// 2.1: letters, digits, `-._~+/`, then `=` padding) and nothing else. Nil when there is none
    /// (so a combining mark after the scheme, which a Character-wise reading swallowed with the
    /// space, makes no credential).
    var bearerCredential: Substring? {
        guard let header = headers[.authorization] else { return nil }
        let bytes = header.utf8
        let scheme = "bearer".utf8
        guard bytes.starts(with: scheme, by: { $0 | 0x20 == $1 }) else { return nil }
        let afterScheme = bytes.dropFirst(scheme.count)
        let credential = afterScheme.drop(while: { $0 == UInt8(ascii: " ") })
        guard credential.startIndex > afterScheme.startIndex, Self.isB64Token(credential) else { return nil }
        return Substring(credential)
    }

    private static func isB64Token(_ bytes: Substring.UTF8View) -> Bool {
        let body = bytes.prefix(while: { $0 != UInt8(ascii: "=") })
        return !body.isEmpty && bytes.dropFirst(body.count).allSatisfy { $0 == UInt8(ascii: "=") } && body.allSatisfy {
            switch $0 {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                true
            default:
                false
            }
        }
    }
}

/// A shared secret given to the service (the admin token, the checkout's token), compared in
/// constant time.
struct SharedSecret: Sendable {
    /// Shorter secrets can be guessed; `scripts/run.sh` makes a random one.
    static let minimumBytes = 32

    private let bytes: [UInt8]

    init(_ text: String) throws(ConfigurationError) {
        guard text.utf8.count >= Self.minimumBytes else {
            throw ConfigurationError("a token must be at least \(Self.minimumBytes) bytes long")
        }
        bytes = Array(text.utf8)
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    func matches(_ credential: Substring) -> Bool {
        let given = Array(credential.utf8)
        guard given.count == bytes.count else { return false }
        return zip(given, bytes).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
