import CouponService
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging

/// A test could not set up what it needs (no database, no TLS cluster): fails with a hint.
package struct TestSetupError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Where the tests' databases are.
package enum TestDatabaseURL {
    /// The PostgreSQL the test command started (scripts/test.sh exports DATABASE_URL); each suite makes
    /// a database of its own there.
    package static let server =
        ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:54329/coupon_test"
    /// The running suite's own database (set by its scoping trait).
    @TaskLocal package static var current: String?
}

/// The settings every test application starts with; tests change what they are about.
package struct TestArguments: AppArguments {

    package var host = "127.0.0.1"
    package var port = 0
    package var databaseURL: String
    package var adminToken: TokenSource? = .given(TestArguments.adminToken)
    package var checkoutToken: TokenSource? = nil
    package var eventsToken: TokenSource? = nil
    package var events = EventSettings()
    package var authJWKS: JWKSSource? = nil
    package var authIssuer: String? = nil
    package var authAudience: String? = nil
    package var authUserClaim = "sub"
    package var authMaxTokenLifetime: Duration = .seconds(24 * 3600)
    package var logLevel: Logger.Level = .warning
    package var databaseTimeout: Duration = .seconds(10)
    package var poolSize = 20
    package var groupSize = 512
    package var idleTimeout: Duration = .seconds(10)
    package var requestTimeout: Duration = .seconds(10)
    package var maxConnections = 1000
    package var metricsPort: Int? = nil
    package var listenerDatabaseURL: String? = nil

    /// Tokens are at least 32 bytes.
    package static let adminToken = "test-admin-token-of-at-least-32-bytes"
    package static let checkoutToken = "test-checkout-token-of-at-least-32-bytes"

    /// The application on the running suite's database, unless another is named.
    package init(databaseURL: String? = nil, databaseTimeout: Duration = .seconds(10), groupSize: Int = 512) {
        self.databaseURL = databaseURL ?? TestDatabaseURL.current ?? TestDatabaseURL.server
        self.databaseTimeout = databaseTimeout
        self.groupSize = groupSize
    }
}

extension TestClientProtocol {
    /// Sends JSON, with the admin token when asked, or another bearer credential.
    package func send(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, admin: Bool = false, bearer: String? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if json != nil { headers[.contentType] = "application/json" }
        if let bearer { headers[.authorization] = "Bearer \(bearer)" }
        if admin { headers[.authorization] = "Bearer \(TestArguments.adminToken)" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    package var problemCode: String? {
        struct Problem: Decodable { var code: String }
        return try? JSONDecoder().decode(Problem.self, from: Data(body.readableBytesView)).code
    }

    package func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
    }
}

/// The fields of an issue answer the tests compare.
package struct TicketBody: Decodable, Hashable {
    package struct Ticket: Decodable, Hashable {
        package var number: Int
        package var code: String
    }
    package var coupon_id: Int64
    package var user_id: String
    package var ticket: Ticket
    package var issued_at: String
}
