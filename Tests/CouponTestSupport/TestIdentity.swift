import Crypto
import CryptoExtras
import Foundation

/// Keys that sign users' tokens the way an identity provider would, with swift-crypto directly (not
/// with the library the service verifies with), and the JWKS file the service reads them from.
package struct TestSigner: Sendable {
    package enum Algorithm: String, Sendable, CaseIterable {
        case es256 = "ES256"
        case rs256 = "RS256"
        case eddsa = "EdDSA"
    }

    package let kid: String
    package let algorithm: Algorithm
    /// The public key as a JWK.
    package let jwk: [String: String]
    private let signature: @Sendable (Data) throws -> Data

    package init(_ algorithm: Algorithm, kid: String) throws {
        self.kid = kid
        self.algorithm = algorithm
        switch algorithm {
        case .es256:
            let key = P256.Signing.PrivateKey()
            let point = key.publicKey.x963Representation  // 0x04 || x || y
            jwk = [
                "kty": "EC", "crv": "P-256", "x": point[1..<33].base64URL, "y": point[33...].base64URL,
            ]
            signature = { try key.signature(for: $0).rawRepresentation }
        case .rs256:
            let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            let primitives = try key.publicKey.getKeyPrimitives()
            jwk = ["kty": "RSA", "n": primitives.modulus.base64URL, "e": primitives.publicExponent.base64URL]
            signature = { try key.signature(for: SHA256.hash(data: $0), padding: .insecurePKCS1v1_5).rawRepresentation }
        case .eddsa:
            let key = Curve25519.Signing.PrivateKey()
            jwk = ["kty": "OKP", "crv": "Ed25519", "x": key.publicKey.rawRepresentation.base64URL]
            signature = { try key.signature(for: $0) }
        }
    }

    /// The JWK as the JWKS file lists it: with its `kid` and `alg`.
    package var publicJWK: [String: String] { jwk.merging(["kid": kid, "alg": algorithm.rawValue]) { $1 } }

    /// A token with these claims, signed by this key; `header` changes or adds header fields.
    package func token(_ claims: [String: any Sendable], header: [String: any Sendable] = [:]) throws -> String {
        let head: [String: any Sendable] = ["alg": algorithm.rawValue, "kid": kid, "typ": "JWT"].merging(header) { $1 }
        let input = try TestSigner.encode(head) + "." + TestSigner.encode(claims)
        return input + "." + (try signature(Data(input.utf8))).base64URL
    }

    /// `header.payload`, both JSON text as given (base64url-encoded here), signed by this key.
    package func token(headerJSON: String, payloadJSON: String) throws -> String {
        try token(header: Data(headerJSON.utf8), payload: Data(payloadJSON.utf8))
    }

    /// A token over these exact bytes (another encoding than UTF-8 too).
    package func token(header: Data, payload: Data) throws -> String {
        let input = header.base64URL + "." + payload.base64URL
        return input + "." + (try signature(Data(input.utf8))).base64URL
    }

    package static func encode(_ object: [String: any Sendable]) throws -> String {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).base64URL
    }
}

/// An identity provider for tests: three keys (ES256, RS256, EdDSA), the JWKS file of their public
/// keys, and tokens for users.
package struct TestIdentity: Sendable {
    package static let issuer = "https://id.test.example"
    package static let audience = "coupon-service"

    package let es256: TestSigner
    package let rs256: TestSigner
    package let eddsa: TestSigner
    /// The JWKS file, in a folder of its own.
    package let jwksFile: URL

    package init() throws {
        es256 = try TestSigner(.es256, kid: "es-1")
        rs256 = try TestSigner(.rs256, kid: "rs-1")
        eddsa = try TestSigner(.eddsa, kid: "ed-1")
        let folder = FileManager.default.temporaryDirectory.appending(path: "coupon-jwks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        jwksFile = folder.appending(path: "jwks.json")
        try publish([es256, rs256, eddsa])
    }

    /// Writes the JWKS file with these keys (a rotation when they differ from before).
    package func publish(_ signers: [TestSigner]) throws {
        let jwks = ["keys": signers.map(\.publicJWK)]
        try JSONSerialization.data(withJSONObject: jwks, options: [.sortedKeys]).write(to: jwksFile, options: .atomic)
    }

    /// The claims of a good token for `user`, valid for an hour from now.
    package static func claims(for user: String, now: Date = Date()) -> [String: any Sendable] {
        [
            "iss": issuer, "aud": audience, "sub": user, "iat": Int(now.timeIntervalSince1970),
            "exp": Int(now.timeIntervalSince1970) + 3600,
        ]
    }

    /// A good token for `user`, signed with ES256.
    package func token(for user: String) throws -> String {
        try es256.token(Self.claims(for: user))
    }

    /// The test application's settings with JWT identity on and the checkout token set.
    package func arguments(_ base: TestArguments = TestArguments()) -> TestArguments {
        var arguments = base
        arguments.authJWKS = .file(jwksFile.path)
        arguments.authIssuer = Self.issuer
        arguments.authAudience = Self.audience
        arguments.checkoutToken = .given(TestArguments.checkoutToken)
        return arguments
    }
}

extension DataProtocol {
    /// Base64url without padding (RFC 7515 section 2).
    package var base64URL: String {
        Data(self).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
