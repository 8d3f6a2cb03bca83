import AsyncHTTPClient
import Crypto
import Foundation
import JWTKit
import Logging
import ServiceLifecycle
import Synchronization

/// The user a bearer JWT names, once its signature, issuer, audience and lifetime check out.
///
/// The keys come from a JWKS (RFC 7517) of public keys, in a file or at the identity provider's URL.
/// Each key must carry its `kid` and its `alg`: the key decides how a token is checked, never the
/// token's header (which must name the same `alg`). A token must name the `kid` of one of them. A
/// file is read again every second; a URL is fetched again every 5 minutes, and at once (at most every
/// `refetchAfter`) when a token names a `kid` the keys lack, the token waiting for that fetch: a
/// provider's new key works from its first token. New keys are used from then on, so keys rotate
/// without a restart; a JWKS that no longer reads (a provider down) keeps the keys before it, with an
/// error logged.
///
/// A token verified once is remembered until its `exp` (a bounded cache, emptied when the keys
/// change), so a retry does not pay the signature check again.
final class TokenVerifier: Service, Sendable {
    struct Settings: Sendable {
        var keys: JWKSSource
        var issuer: String
        var audience: String
        /// The claim that holds the user id.
        var userClaim = "sub"
        /// A token whose `exp` is further ahead than this is refused, so none is trusted (or
        /// remembered) longer.
        var maxLifetime: TimeInterval = 24 * 3600
        /// A URL's keys are fetched again at most this often for an unknown `kid`.
        var refetchAfter: Duration = .seconds(5)
        /// And at least this often.
        var refreshEvery: Duration = .seconds(300)
    }

    /// A longer bearer is refused before it is read.
    static let maximumTokenBytes = 8 * 1024
    /// How far `exp` and `nbf` may be off the service's clock.
    static let leeway: TimeInterval = 60
    /// Algorithms a key may name; HMAC is not one: a public key is not a shared secret.
    static let algorithms: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

    /// The keys as last read, by `kid`, each made by jwt-kit for the `alg` the file gives it; and
    /// the text they were read from.
    private struct KeySet: Sendable {
        var text: Data
        var keys: [String: any JWTAlgorithm]
    }

    private let settings: Settings
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let keySet: Mutex<KeySet>
    private let verified = Mutex(VerifiedTokens(capacity: 50_000))
    /// The fetch of a URL's keys for an unknown `kid` under way (every such token waits for the one),
    /// and when the last one began.
    private let refetch = Mutex<(running: Task<Void, Never>?, began: ContinuousClock.Instant?)>((nil, nil))

    /// Reads the keys once; a JWKS that does not read is a configuration error.
    init(_ settings: Settings, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) async throws {
        self.settings = settings
        self.logger = logger
        self.now = now
        let text = try await Self.read(settings.keys)
        keySet = Mutex(KeySet(text: text, keys: try await Self.keys(from: text, source: settings.keys)))
    }

    var keyIDs: [String] { keySet.withLock { $0.keys.keys.sorted() } }

    /// The user the token names, or a 401 `invalid_token` problem saying what is wrong with it.
    ///
    /// The JWS is taken apart here (RFC 7515 compact form: header, payload, signature), and each part
    /// decoded once; jwt-kit's key checks the signature over the first two as sent.
    func user(of token: Substring) async throws(CouponProblem) -> String {
        guard token.utf8.count <= Self.maximumTokenBytes else { throw .invalidToken("The token is longer than 8 KiB.") }
        let digest = SHA256.hash(data: Array(token.utf8))
        let at = now()
        if let user = verified.withLock({ $0.user(for: digest, at: at) }) { return user }

        let malformed = CouponProblem.invalidToken("The token is not a well-formed JWT.")
        let parts = token.split(separator: ".", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, let headerJSON = Data(base64URL: parts[0]), let signature = Data(base64URL: parts[2]) else {
            throw malformed
        }
        guard let payload = Data(base64URL: parts[1]) else { throw malformed }
        let claimMembers = try Self.members(of: payload, part: "payload")
        let header = try TokenHeader(json: headerJSON)
        guard let key = await key(header.keyID) else {
            throw .invalidToken("No key of this service has the token's 'kid'.")
        }
        guard header.algorithm == key.name else {
            throw .invalidToken("The token's 'alg' is not the algorithm of its key.")
        }
        guard (try? key.verify(signature, signs: Data(token.utf8[..<parts[1].endIndex]))) == true else {
            throw .invalidToken("The token's signature does not verify.")
        }
        guard let claims = Claims(claimMembers, userClaim: settings.userClaim) else { throw malformed }
        let user = try check(claims, at: at)
        let expires = Date(timeIntervalSince1970: claims.expiresAt + Self.leeway)
        verified.withLock { $0.remember(digest, user: user, until: expires) }
        return user
    }

    /// The members of a header or payload, read as strict JSON (`StrictJSON`) in one pass: UTF-8,
    /// RFC 8259, and no member twice (RFC 7515 section 4 and RFC 7519 section 4: decoders differ on
    /// which value wins). No second parser reads them.
    static func members(of json: Data, part: String) throws(CouponProblem) -> [String: StrictJSON.Value] {
        let value: StrictJSON.Value
        do {
            value = try StrictJSON.parse(json)
        } catch {
            switch error {
            case .repeatedKey(let key): throw .invalidToken("The token's \(part) names '\(key)' twice.")
            case .encoding, .syntax: throw .invalidToken("The token's \(part) is not UTF-8 JSON (RFC 8259): \(error).")
            }
        }
        guard case .object(let members) = value else { throw .invalidToken("The token is not a well-formed JWT.") }
        return members
    }

    /// Issuer, audience, lifetime and the user claim, once the signature holds.
    private func check(_ claims: Claims, at now: Date) throws(CouponProblem) -> String {
        guard claims.issuer == settings.issuer else { throw .invalidToken("The token's 'iss' is not this service's issuer.") }
        guard claims.audience.contains(settings.audience) else {
            throw .invalidToken("The token's 'aud' does not name this service.")
        }
        let seconds = now.timeIntervalSince1970
        guard seconds < claims.expiresAt + Self.leeway else { throw .invalidToken("The token has expired.") }
        guard claims.expiresAt <= seconds + settings.maxLifetime + Self.leeway else {
            throw .invalidToken("The token's 'exp' is further ahead than this service accepts (\(Int(settings.maxLifetime)) s).")
        }
        if let issuedAt = claims.issuedAt, seconds + Self.leeway < issuedAt {
            throw .invalidToken("The token's 'iat' is in the future.")
        }
        if let notBefore = claims.notBefore, seconds + Self.leeway < notBefore {
            throw .invalidToken("The token is not valid yet.")
        }
        guard let user = claims.user, (try? RequestParser.userID(user)) != nil
        else {
            throw .invalidToken(
                "The token's '\(settings.userClaim)' must be a user id: 1 to 64 characters of A-Z a-z 0-9 . _ : @ -")
        }
        return user
    }

    // MARK: Keys

    /// The key of `kid`; for keys at a URL, fetched again first when unknown (unless fetched within
    /// `refetchAfter`).
    private func key(_ kid: String) async -> (any JWTAlgorithm)? {
        if let key = keySet.withLock({ $0.keys[kid] }) { return key }
        guard case .url = settings.keys else { return nil }
        let fetch: Task<Void, Never>? = refetch.withLock { refetch in
            if let running = refetch.running { return running }
            let now = ContinuousClock.now
            if let began = refetch.began, now - began < settings.refetchAfter { return nil }
            let task = Task {
                await self.reloadIfChanged()
                self.refetch.withLock { $0.running = nil }
            }
            refetch = (task, now)
            return task
        }
        guard let fetch else { return nil }
        await fetch.value
        return keySet.withLock { $0.keys[kid] }
    }

    /// Reads a file again every second, a URL every `refreshEvery`, until the service stops.
    func run() async throws {
        let every: Duration = if case .url = settings.keys { settings.refreshEvery } else { .seconds(1) }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: every)
                await self.reloadIfChanged()
            }
        }
    }

    /// Reads the keys; when their text changed, they replace the old ones and the verified tokens
    /// are forgotten (a key taken out revokes its tokens). True when the keys changed.
    @discardableResult
    func reloadIfChanged() async -> Bool {
        do {
            let text = try await Self.read(settings.keys)
            guard keySet.withLock({ $0.text != text }) else { return false }
            let keys = try await Self.keys(from: text, source: settings.keys)
            keySet.withLock { $0 = KeySet(text: text, keys: keys) }
            verified.withLock { $0.removeAll() }
            logger.info("JWKS reloaded", metadata: ["jwks": "\(settings.keys)", "kids": "\(keys.keys.sorted())"])
            return true
        } catch {
            logger.error("JWKS does not read; keeping the keys before it", metadata: ["jwks": "\(settings.keys)", "error": "\(error)"])
            return false
        }
    }

    /// A JWKS larger than this is refused.
    static let maximumJWKSBytes = 1 << 20

    private static func read(_ source: JWKSSource) async throws -> Data {
        switch source {
        case .file(let file):
            do {
                return try Data(contentsOf: URL(filePath: file))
            } catch {
                throw ConfigurationError("cannot read the JWKS file \(file): \(error.localizedDescription)")
            }
        case .url(let url):
            do {
                let request = HTTPClientRequest(url: url.absoluteString)
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
                guard response.status == .ok else { throw ConfigurationError("answered \(response.status)") }
                return Data(buffer: try await response.body.collect(upTo: maximumJWKSBytes))
            } catch {
                throw ConfigurationError("cannot fetch the JWKS at \(url): \(error)")
            }
        }
    }

    /// Every key of the file, checked: public, with a `kid` of its own and an `alg` this service
    /// accepts that fits its `kty` and curve.
    static func keys(from text: Data, source: JWKSSource) async throws -> [String: any JWTAlgorithm] {
        let file = "\(source)"
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: text)
        } catch {
            throw ConfigurationError("\(file) is not a JWKS (RFC 7517): \(error)")
        }
        guard !jwks.keys.isEmpty else { throw ConfigurationError("\(file) holds no keys") }
        var keys: [String: any JWTAlgorithm] = [:]
        for jwk in jwks.keys {
            guard let kid = jwk.keyIdentifier?.string, !kid.isEmpty else {
                throw ConfigurationError("every key in \(file) needs a 'kid'")
            }
            guard keys[kid] == nil else { throw ConfigurationError("the 'kid' \(kid) appears twice in \(file)") }
            guard jwk.privateExponent == nil else {
                throw ConfigurationError("key \(kid) in \(file) is a private key; the service needs only public keys")
            }
            guard let algorithm = jwk.algorithm?.rawValue, algorithms.contains(algorithm) else {
                throw ConfigurationError(
                    "key \(kid) in \(file) needs an 'alg' of \(algorithms.sorted().joined(separator: ", "))")
            }
            let collection = JWTKeyCollection()
            let key: any JWTAlgorithm
            do {
                try await collection.add(jwk: jwk)
                // Asked without a token's `alg`: fails unless the key's own `alg` fits its `kty` and curve.
                key = try await collection.getKey(for: jwk.keyIdentifier)
            } catch {
                throw ConfigurationError("key \(kid) in \(file) does not make an \(algorithm) key: \(error)")
            }
            guard key.name == algorithm else {
                throw ConfigurationError("key \(kid) in \(file) made an \(key.name) key, not \(algorithm)")
            }
            keys[kid] = key
        }
        return keys
    }
}

/// The fields of a token's header this service reads before its signature: `kid` and `alg`. A header
/// that names a field twice, or asks for extensions in `crit` (this service understands none), is
/// refused (RFC 7515 sections 4 and 4.1.11).
struct TokenHeader: Sendable {
    var keyID: String
    var algorithm: String

    init(json: Data) throws(CouponProblem) {
        let members = try TokenVerifier.members(of: json, part: "header")
        guard members["crit"] == nil else { throw .invalidToken("The token's header asks for extensions ('crit') this service does not know.") }
        guard case .string(let kid)? = members["kid"], case .string(let alg)? = members["alg"] else {
            throw .invalidToken("The token's header must name its 'kid' and 'alg'.")
        }
        keyID = kid
        algorithm = alg
    }
}

/// The claims a token is judged by, read from its payload's members, each as the type it must have;
/// nil when one has another (a claim absent or null is absent).
struct Claims {
    var issuer: String?
    var audience: [String] = []
    /// Seconds since 1970; required: a token without an end is refused.
    var expiresAt: Double
    var notBefore: Double?
    var issuedAt: Double?
    /// The claim that names the user, when a string.
    var user: String?

    init?(_ members: [String: StrictJSON.Value], userClaim: String) {
        func number(_ name: String) -> Double?? {
            switch members[name] {
            case nil, .null?: .some(nil)
            case .number(let value)?: .some(value)
            default: nil
            }
        }
        switch members["iss"] {
        case nil, .null?: issuer = nil
        case .string(let value)?: issuer = value
        default: return nil
        }
        switch members["aud"] {
        // A string, or a list of strings (RFC 7519 section 4.1.3).
        case nil, .null?: audience = []
        case .string(let one)?: audience = [one]
        case .array(let many)?:
            audience = []
            for case .string(let one) in many { audience.append(one) }
            guard audience.count == many.count else { return nil }
        default: return nil
        }
        guard case .number(let expiresAt)? = members["exp"], let notBefore = number("nbf"), let issuedAt = number("iat") else { return nil }
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.issuedAt = issuedAt
        if case .string(let user)? = members[userClaim] { self.user = user }
    }
}

/// Tokens verified before, by their SHA-256, each until its `exp`. Bounded: two generations of at
/// most `capacity` entries each; when the newer one fills up, the older one is dropped.
struct VerifiedTokens: Sendable {
    private struct Entry: Sendable {
        var user: String
        var until: Date
    }
    let capacity: Int
    private var newer: [SHA256Digest: Entry] = [:]
    private var older: [SHA256Digest: Entry] = [:]

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { newer.count + older.count }

    func user(for digest: SHA256Digest, at now: Date) -> String? {
        guard let entry = newer[digest] ?? older[digest], now < entry.until else { return nil }
        return entry.user
    }

    mutating func remember(_ digest: SHA256Digest, user: String, until: Date) {
        if newer.count >= capacity {
            older = newer
            newer = [:]
        }
        newer[digest] = Entry(user: user, until: until)
    }

    mutating func removeAll() {
        newer = [:]
        older = [:]
    }
}

extension Data {
    /// Base64url without padding (RFC 7515 section 2), strictly: only its 64 characters, no `=`, no
    /// whitespace, a length that is not 1 more than a multiple of 4 and spare bits at zero; nil for
    /// anything else. Read byte by byte: Foundation's string replacing cost more than the signature.
    init?(base64URL text: Substring) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count * 3 / 4)
        var pending: UInt32 = 0
        var bits = 0
        for character in text.utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "_"): value = 63
            default: return nil
            }
            pending = pending << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: pending >> UInt32(bits)))
                pending &= (1 << UInt32(bits)) - 1
            }
        }
        guard bits < 6, pending == 0 else { return nil }
        self.init(bytes)
    }
}

/// Where the keys that sign users' tokens are published: a JWKS file, or the identity provider's
/// JWKS URL (`https`, or `http` on a loopback host: a sidecar, a test).
public enum JWKSSource: Sendable, Equatable, CustomStringConvertible {
    case file(String)
    case url(URL)

    /// A JWKS URL, checked: https, or http to 127.0.0.1, ::1 or localhost; no credentials in it.
    public static func url(_ text: String) throws -> JWKSSource {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host(), !host.isEmpty else {
            throw ConfigurationError("--auth-jwks-url must be an http(s) URL: \(text)")
        }
        guard url.user() == nil, url.password() == nil else { throw ConfigurationError("--auth-jwks-url must not hold credentials") }
        let loopback = ["127.0.0.1", "::1", "[::1]", "localhost"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw ConfigurationError("--auth-jwks-url must be https (http only to a loopback host): \(text)")
        }
        return .url(url)
    }

    public var description: String {
        switch self {
        case .file(let file): file
        case .url(let url): url.absoluteString
        }
    }
}
