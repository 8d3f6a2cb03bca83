import Crypto
import Foundation
import Hummingbird
import Logging
import Synchronization
import Testing

@testable import CouponService
import CouponTestSupport

/// A wall clock the test moves (the token rules read dates).
final class TestWallClock: Sendable {
    private let date = Mutex(Date())
    func withLock<T>(_ body: (inout Date) -> T) -> T { date.withLock { body(&$0) } }
}

/// Every way a token can fail, and the ways it holds, against a real JWKS file.
@Suite struct TokenVerifierTests {
    let identity: TestIdentity
    let clock = TestWallClock()

    init() throws { identity = try TestIdentity() }

    func verifier(userClaim: String = "sub", maxLifetime: TimeInterval = 24 * 3600) async throws -> TokenVerifier {
        let clock = self.clock
        return try await TokenVerifier(
            .init(
                keys: .file(identity.jwksFile.path), issuer: TestIdentity.issuer, audience: TestIdentity.audience, userClaim: userClaim,
                maxLifetime: maxLifetime),
            logger: Logger(label: "test"), now: { clock.withLock { $0 } })
    }

    /// The red team's: an 'iat' in the future was accepted, and an 'exp' of 1e308 accepted and
    /// remembered until then. Now a token may be issued at most the leeway ahead, and valid for at
    /// most --auth-max-token-lifetime from now.
    @Test func aTokenFromTheFutureOrForeverIsRefused() async throws {
        let verifier = try await verifier()
        let now = clock.withLock { $0 }
        let seconds = now.timeIntervalSince1970
        let claims = TestIdentity.claims(for: "ann", now: now)
        func judged(_ changes: [String: any Sendable], by verifier: TokenVerifier) async throws -> String {
            await judge(verifier, try identity.es256.token(claims.merging(changes) { $1 }))
        }
        #expect(try await judged(["iat": seconds + 61], by: verifier) == "The token's 'iat' is in the future.")
        #expect(try await judged(["iat": seconds + 59], by: verifier) == "ok: ann")
        let tooLong = "The token's 'exp' is further ahead than this service accepts (86400 s)."
        #expect(try await judged(["exp": 1e308], by: verifier) == tooLong)
        #expect(try await judged(["exp": seconds + 24 * 3600 + 61], by: verifier) == tooLong)
        #expect(try await judged(["exp": seconds + 24 * 3600], by: verifier) == "ok: ann")
        let shorter = try await self.verifier(maxLifetime: 600)
        #expect(try await judged([:], by: shorter) == "The token's 'exp' is further ahead than this service accepts (600 s).")
        #expect(try await judged(["exp": seconds + 600], by: shorter) == "ok: ann")
    }

    /// An ECDSA signature (r, s) has a twin (r, n - s) that verifies as well: accepted as the same
    /// token, naming the same user with the same claims (docs/security.md says why it is not refused).
    /// A changed r still fails.
    @Test func anECDSASignaturesTwinIsTheSameToken() async throws {
        let verifier = try await verifier()
        let parts = try identity.es256.token(TestIdentity.claims(for: "ann")).split(separator: ".").map(String.init)
        let signature = [UInt8](try #require(Data(base64URL: Substring(parts[2]))))
        let order: [UInt8] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
        ]  // of P-256
        var twin = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for i in (0..<32).reversed() {
            let difference = Int(order[i]) - Int(signature[32 + i]) - borrow
            twin[i] = UInt8((difference + 256) % 256)
            borrow = difference < 0 ? 1 : 0
        }
        #expect(twin != Array(signature[32...]))
        let input = parts[0] + "." + parts[1] + "."
        #expect(await judge(verifier, input + Data(signature[..<32] + twin).base64URL) == "ok: ann")
        var otherR = signature
        otherR[0] ^= 1
        #expect(await judge(verifier, input + Data(otherR[..<32] + twin).base64URL) == "The token's signature does not verify.")
    }

    /// The detail of the 401, or "ok: USER" when the token holds.
    func judge(_ verifier: TokenVerifier, _ token: String) async -> String {
        do {
            return "ok: " + (try await verifier.user(of: Substring(token)))
        } catch {
            #expect(error.status == .unauthorized && error.code == "invalid_token")
            return error.detail
        }
    }

    @Test(arguments: TestSigner.Algorithm.allCases)
    func eachAlgorithmsKeyVerifiesItsTokens(_ algorithm: TestSigner.Algorithm) async throws {
        let verifier = try await verifier()
        let signer = [identity.es256, identity.rs256, identity.eddsa].first { $0.algorithm == algorithm }!
        #expect(await judge(verifier, try signer.token(TestIdentity.claims(for: "ann"))) == "ok: ann")
    }

    @Test func brokenAndForgedTokensAreRefused() async throws {
        let verifier = try await verifier()
        let claims = TestIdentity.claims(for: "ann")
        let good = try identity.es256.token(claims)
        let parts = good.split(separator: ".").map(String.init)
        let stranger = try TestSigner(.es256, kid: identity.es256.kid)  // another JWKS's key, under a known kid
        let hmacHeader = try TestSigner.encode(["alg": "HS256", "kid": identity.rs256.kid, "typ": "JWT"])
        let confused = hmacHeader + "." + parts[1]
        // Algorithm confusion: an HMAC keyed with the RSA key's public JWK, as a naive verifier would check it.
        let publicKeyBytes = try JSONSerialization.data(withJSONObject: identity.rs256.publicJWK, options: [.sortedKeys])
        let hmac = Data(HMAC<SHA256>.authenticationCode(for: Data(confused.utf8), using: SymmetricKey(data: publicKeyBytes)))
        let malformed = "The token is not a well-formed JWT."
        // Named twice (found by the token fuzzer: the first value won, where RFC 7519 says refuse).
        let claimsJSON = String(decoding: try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]), as: UTF8.self)
        let headerJSON = #"{"alg":"ES256","kid":"\#(identity.es256.kid)","typ":"JWT"}"#
        let subTwice = try identity.es256.token(headerJSON: headerJSON, payloadJSON: claimsJSON.dropLast() + #","sub":"eve"}"#)
        let kidTwice = try identity.es256.token(headerJSON: headerJSON.dropLast() + #","kid":"nobody"}"#, payloadJSON: claimsJSON)
        let signature = "The token's signature does not verify."
        let cases: [(String, String, expected: String)] = [
            ("a bad signature", parts[0] + "." + (try TestSigner.encode(TestIdentity.claims(for: "eve"))) + "." + parts[2], signature),
            ("another JWKS's key under a known kid", try stranger.token(claims), signature),
            ("an unknown kid", try identity.es256.token(claims, header: ["kid": "nobody"]), "No key of this service has the token's 'kid'."),
            ("no kid", try unsigned(["alg": "ES256"], claims, signature: parts[2]), "The token's header must name its 'kid' and 'alg'."),
            ("alg none", try unsigned(["alg": "none", "kid": identity.es256.kid], claims, signature: ""), "The token's 'alg' is not the algorithm of its key."),
            ("alg none, no signature part", try unsigned(["alg": "none", "kid": identity.es256.kid], claims, signature: nil), malformed),
            ("four parts", good + ".x", malformed),
            ("HS256 keyed with the public key", confused + "." + hmac.base64URL, "The token's 'alg' is not the algorithm of its key."),
            ("the key's kid with another alg", try identity.es256.token(claims, header: ["alg": "ES384"]), "The token's 'alg' is not the algorithm of its key."),
            ("expired beyond the leeway", try identity.es256.token(claims.merging(["exp": now - 61]) { $1 }), "The token has expired."),
            ("not valid yet beyond the leeway", try identity.es256.token(claims.merging(["nbf": now + 61]) { $1 }), "The token is not valid yet."),
            ("no exp", try identity.es256.token(claims.filter { $0.key != "exp" }), malformed),
            ("another issuer", try identity.es256.token(claims.merging(["iss": "https://evil.example"]) { $1 }), "The token's 'iss' is not this service's issuer."),
            ("another audience", try identity.es256.token(claims.merging(["aud": "another-service"]) { $1 }), "The token's 'aud' does not name this service."),
            ("a sub that is not a user id", try identity.es256.token(claims.merging(["sub": "has space"]) { $1 }), "The token's 'sub' must be a user id"),
            ("a sub that is a number", try identity.es256.token(claims.merging(["sub": 42]) { $1 }), "The token's 'sub' must be a user id"),
            ("malformed base64", "%%%." + parts[1] + "." + parts[2], malformed),
            ("malformed JSON", Data("{not json".utf8).base64URL + "." + parts[1] + "." + parts[2], "The token's header is not UTF-8 JSON"),
            ("a payload that is not JSON", parts[0] + "." + Data("[1,2".utf8).base64URL + "." + parts[2], "The token's payload is not UTF-8 JSON"),
            // The red team's: a payload in UTF-16 that names sub twice was read as its first sub.
            ("a UTF-16 payload naming sub twice", try identity.es256.token(
                header: Data(headerJSON.utf8), payload: utf16WithByteOrderMark(claimsJSON.dropLast() + #","sub":"eve"}"#)),
             "The token's payload is not UTF-8 JSON (RFC 8259): it is UTF-16 with a byte order mark."),
            ("a UTF-8 header with a byte order mark", try identity.es256.token(
                header: Data([0xEF, 0xBB, 0xBF]) + Data(headerJSON.utf8), payload: Data(claimsJSON.utf8)),
             "The token's header is not UTF-8 JSON (RFC 8259): it is UTF-8 with a byte order mark."),
            ("a trailing comma in the header", try identity.es256.token(headerJSON: headerJSON.dropLast() + ",}", payloadJSON: claimsJSON),
             "The token's header is not UTF-8 JSON (RFC 8259): a key in double quotes at byte"),
            ("a trailing comma in the payload", try identity.es256.token(headerJSON: headerJSON, payloadJSON: claimsJSON.dropLast() + ",}"),
             "The token's payload is not UTF-8 JSON (RFC 8259): a key in double quotes at byte"),
            ("two parts", parts[0] + "." + parts[1], malformed),
            ("a claim named twice", subTwice, "The token's payload names 'sub' twice."),
            ("a header field named twice", kidTwice, "The token's header names 'kid' twice."),
            ("an extension asked for in crit", try identity.es256.token(claims, header: ["crit": ["exp"]]), "The token's header asks for extensions"),
            ("empty", "", malformed),
            ("over 8 KiB", try identity.es256.token(claims.merging(["pad": String(repeating: "x", count: 8 * 1024)]) { $1 }), "The token is longer than 8 KiB."),
        ]
        for (name, token, expected) in cases {
            let verdict = await judge(verifier, token)
            #expect(verdict.hasPrefix(expected), "\(name): \(verdict)")
        }
    }

    @Test func theLeewayIsSixtySeconds() async throws {
        let verifier = try await verifier()
        let claims = TestIdentity.claims(for: "ann", now: clock.withLock { $0 })
        #expect(await judge(verifier, try identity.es256.token(claims.merging(["exp": now - 59]) { $1 })) == "ok: ann")
        #expect(await judge(verifier, try identity.es256.token(claims.merging(["nbf": now + 59]) { $1 })) == "ok: ann")
        #expect(await judge(verifier, try identity.es256.token(claims.merging(["aud": ["x", TestIdentity.audience]]) { $1 })) == "ok: ann")
    }

    @Test func anotherClaimCanNameTheUser() async throws {
        let verifier = try await verifier(userClaim: "customer_id")
        let claims = TestIdentity.claims(for: "ann").merging(["customer_id": "c-42"]) { $1 }
        #expect(await judge(verifier, try identity.eddsa.token(claims)) == "ok: c-42")
    }

    @Test func aVerifiedTokenIsRememberedUntilItsEndOnly() async throws {
        let verifier = try await verifier()
        let token = try identity.rs256.token(TestIdentity.claims(for: "ann", now: clock.withLock { $0 }))
        #expect(await judge(verifier, token) == "ok: ann")
        #expect(await judge(verifier, token) == "ok: ann", "from the cache")
        clock.withLock { $0 += 3600 + 61 }
        #expect(await judge(verifier, token) == "The token has expired.", "the cache keeps a token until its exp only")
    }

    /// Keys at the provider's URL (`--auth-jwks-url`), against a local provider that rotates them: a
    /// token under a `kid` just published verifies at its first try (one fetch, which the tokens
    /// arriving meanwhile share); an unknown `kid` fetches at most every `refetchAfter`; a provider
    /// that is down keeps the last good keys; a key taken out revokes its tokens at the next fetch.
    @Test func keysAtTheProvidersURLRotateWithoutARestart() async throws {
        let provider = Mutex((fetches: 0, down: false))
        let router = Router()
        let jwksFile = identity.jwksFile
        router.get("jwks.json") { _, _ -> Response in
            guard !provider.withLock({ state in state.fetches += 1; return state.down }) else {
                return Response(status: .serviceUnavailable)
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: try Data(contentsOf: jwksFile))))
        }
        let next = try TestSigner(.es256, kid: "es-2")
        try identity.publish([identity.es256])
        try await withLoopbackServer(router) { port in
            let verifier = try await TokenVerifier(
                .init(
                    keys: try JWKSSource.url("http://127.0.0.1:\(port)/jwks.json"), issuer: TestIdentity.issuer,
                    audience: TestIdentity.audience, refetchAfter: .milliseconds(500)),
                logger: Logger(label: "test"))
            func fetches() -> Int { provider.withLock { $0.fetches } }
            let old = try identity.es256.token(TestIdentity.claims(for: "ann"))
            let new = try next.token(TestIdentity.claims(for: "bob"))
            #expect(await judge(verifier, old) == "ok: ann")
            #expect(fetches() == 1, "fetched once, at the start")

            try identity.publish([identity.es256, next])
            async let first = judge(verifier, new)
            async let second = judge(verifier, new)
            #expect(await [first, second] == ["ok: bob", "ok: bob"], "the new kid works from its first token")
            #expect(fetches() == 2, "one fetch for both")

            let stranger = try TestSigner(.es256, kid: "nobody").token(TestIdentity.claims(for: "eve"))
            #expect(await judge(verifier, stranger) == "No key of this service has the token's 'kid'.")
            #expect(fetches() == 2, "not fetched again within refetchAfter")

            provider.withLock { $0.down = true }
            try await Task.sleep(for: .milliseconds(600))
            #expect(await judge(verifier, stranger) == "No key of this service has the token's 'kid'.")
            #expect(fetches() == 3, "fetched again after refetchAfter")
            #expect(await judge(verifier, new) == "ok: bob", "the provider down: the last good keys kept")

            provider.withLock { $0.down = false }
            try identity.publish([next])
            #expect(await verifier.reloadIfChanged(), "the periodic fetch")
            #expect(await judge(verifier, old) == "No key of this service has the token's 'kid'.", "the key taken out revokes its tokens")
        }
    }

    /// `--auth-jwks-url`: https, or http only to a loopback host; no credentials.
    @Test func aJWKSURLIsHTTPSOrLoopback() throws {
        for good in ["https://id.example/.well-known/jwks.json", "http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/k"] {
            #expect((try? JWKSSource.url(good)) != nil, "\(good)")
        }
        for bad in ["http://id.example/jwks.json", "ftp://id.example/jwks", "file:///etc/jwks.json", "https://u:p@id.example/jwks", "jwks.json", ""] {
            #expect((try? JWKSSource.url(bad)) == nil, "\(bad)")
        }
    }

    @Test func keysRotateWithoutARestart() async throws {
        let verifier = try await verifier()
        let old = try identity.es256.token(TestIdentity.claims(for: "ann"))
        #expect(await judge(verifier, old) == "ok: ann")
        let next = try TestSigner(.es256, kid: "es-2")
        let new = try next.token(TestIdentity.claims(for: "ann"))
        #expect(await judge(verifier, new) != "ok: ann", "not published yet")

        try identity.publish([next, identity.rs256])
        #expect(await verifier.reloadIfChanged())
        #expect(await judge(verifier, new) == "ok: ann", "the new key is used")
        #expect(await judge(verifier, old) != "ok: ann", "the key taken out revokes its tokens, cached or not")
        #expect(await verifier.reloadIfChanged() == false, "nothing changed")

        try Data("{not a jwks".utf8).write(to: identity.jwksFile)
        #expect(await verifier.reloadIfChanged() == false)
        #expect(await judge(verifier, new) == "ok: ann", "a broken file keeps the keys before it")
    }

    @Test func aFileThatCannotBeTrustedStopsTheStart() async throws {
        let private_ = try TestSigner(.es256, kid: "p").publicJWK.merging(["d": "AAAA"]) { $1 }
        let files: [(String, Any)] = [
            ("no keys", ["keys": [[String: String]]()]),
            ("no kid", ["keys": [identity.es256.publicJWK.filter { $0.key != "kid" }]]),
            ("no alg: the token's header would decide", ["keys": [identity.es256.publicJWK.filter { $0.key != "alg" }]]),
            ("an alg that does not fit the key", ["keys": [identity.es256.publicJWK.merging(["alg": "RS256"]) { $1 }]]),
            ("HMAC", ["keys": [["kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"]]]),
            ("a private key", ["keys": [private_]]),
            ("a kid twice", ["keys": [identity.es256.publicJWK, identity.es256.publicJWK]]),
        ]
        for (name, jwks) in files {
            try JSONSerialization.data(withJSONObject: jwks).write(to: identity.jwksFile)
            await #expect(throws: ConfigurationError.self, "\(name)") { _ = try await verifier() }
        }
    }

    @Test func theCacheIsBounded() {
        var cache = VerifiedTokens(capacity: 2)
        let later = Date().addingTimeInterval(60)
        func digest(_ n: Int) -> SHA256Digest { SHA256.hash(data: [UInt8(n)]) }
        for n in 0..<5 { cache.remember(digest(n), user: "u\(n)", until: later) }
        #expect(cache.count <= 4)
        #expect(cache.user(for: digest(4), at: Date()) == "u4")
        #expect(cache.user(for: digest(0), at: Date()) == nil, "the oldest generation was dropped")
    }

    var now: Int { Int(clock.withLock { $0 }.timeIntervalSince1970) }

    /// A token with this header and these claims and any signature part (nil: no third part).
    func unsigned(_ header: [String: any Sendable], _ claims: [String: any Sendable], signature: String?) throws -> String {
        let input = try TestSigner.encode(header) + "." + TestSigner.encode(claims)
        return signature.map { input + "." + $0 } ?? input
    }

    @Test func base64URLIsReadStrictly() {
        for length in 0..<40 {
            let bytes = Data((0..<length).map { _ in UInt8.random(in: 0...255) })
            #expect(Data(base64URL: Substring(bytes.base64URL)) == bytes, "\(length) bytes")
        }
        // Padding, the other alphabet, whitespace, a length of 4n + 1, spare bits not zero.
        for text in ["QQ==", "a+b/", "QUJD\n", " QUJD", "QUJDR", "QR", "QUJ"] {
            #expect(Data(base64URL: Substring(text)) == nil, "\(text)")
        }
        #expect(Data(base64URL: "QQ") == Data("A".utf8))
        #expect(Data(base64URL: "QUI") == Data("AB".utf8))
    }
}
