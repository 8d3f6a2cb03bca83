import Hummingbird

extension Request {
    /// The credential of `Authorization: Bearer <credential>`; the scheme is matched without regard to
    /// case (RFC 9110 section 11.1), the credential as sent. Nil when there is none.
    var bearerCredential: Substring? {
        guard let header = headers[.authorization] else { return nil }
        let scheme = "bearer "
        guard header.utf8.count > scheme.utf8.count,
            header.utf8.prefix(scheme.utf8.count).elementsEqual(scheme.utf8, by: { $0 | 0x20 == $1 })
        else { return nil }
        let credential = header.dropFirst(scheme.count).drop(while: { $0 == " " })
        return credential.isEmpty ? nil : credential
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
