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

/// The settings every test application starts with; tests change what they are about.
package struct TestArguments: AppArguments {
    /// The PostgreSQL the test command started (scripts/test.sh exports DATABASE_URL).
    package static let testDatabaseURL =
        ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:54329/coupon_test"

    package var host = "127.0.0.1"
    package var port = 0
    package var databaseURL = TestArguments.testDatabaseURL
    package var adminToken: String? = "test-admin-token"
    package var logLevel: Logger.Level = .warning
    package var databaseTimeout: Duration = .seconds(10)
    package var maxConnections = 20
    package var maxGroupSize = 512

    package init(databaseURL: String = TestArguments.testDatabaseURL, databaseTimeout: Duration = .seconds(10), maxGroupSize: Int = 512) {
        self.databaseURL = databaseURL
        self.databaseTimeout = databaseTimeout
        self.maxGroupSize = maxGroupSize
    }
}

extension TestClientProtocol {
    /// Sends JSON, with the admin token when asked.
    package func send(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, admin: Bool = false
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if json != nil { headers[.contentType] = "application/json" }
        if admin { headers[.authorization] = "Bearer test-admin-token" }
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
