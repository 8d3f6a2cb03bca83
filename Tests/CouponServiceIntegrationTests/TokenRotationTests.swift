@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// A service token kept in a file rotates with no restart: both tokens work while the file holds
/// two, the old one stops once it is taken out, and a file that goes bad keeps the tokens before it.
@Suite struct TokenRotationTests {
    static let old = "old-admin-token-of-at-least-32-bytes"
    static let new = "new-admin-token-of-at-least-32-bytes"

    @Test(.migratedDatabase) func anAdminTokenRotatesWithNoRestart() async throws {
        let file = FileManager.default.temporaryDirectory.appending(path: "admin-token-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        @Sendable func write(_ text: String) throws { try text.write(toFile: file, atomically: true, encoding: .utf8) }
        try write(Self.old + "\n")
        var arguments = TestArguments()
        arguments.adminToken = .file(file)
        try await buildApplication(arguments).test(.router) { client in
            func status(_ token: String) async throws -> HTTPResponse.Status {
                try await client.send(.get, "/v1/webhooks", bearer: token).status
            }
            #expect(try await status(Self.old) == .ok)
            #expect(try await status(Self.new) == .unauthorized)

            // The new one added: both work.
            try write("\(Self.old)\n\(Self.new)\n")
            #expect(try await waitUntil(.seconds(5), every: .milliseconds(50)) { try await status(Self.new) == .ok })
            #expect(try await status(Self.old) == .ok)

            // The old one removed: it stops, the new one stays.
            try write("  \(Self.new)  \r\n\n")
            #expect(try await waitUntil(.seconds(5), every: .milliseconds(50)) { try await status(Self.old) == .unauthorized })
            #expect(try await status(Self.new) == .ok)

            // A file gone bad (three tokens, then none, then a short one): the tokens before it stay.
            for bad in ["\(Self.old)\n\(Self.new)\nthird-token-of-at-least-32-bytes-long\n", "\n", "short\n"] {
                try write(bad)
                try await Task.sleep(for: .milliseconds(1500))
                #expect(try await status(Self.new) == .ok, "\(bad)")
                #expect(try await status(Self.old) == .unauthorized, "\(bad)")
            }
        }
    }

    @Test func aTokenFileHoldsOneOrTwoTokensOfThirtyTwoBytes() throws {
        let token = String(repeating: "t", count: 32)
        #expect(try ServiceTokens.secrets(in: "\(token)\n", name: "admin token").count == 1)
        #expect(try ServiceTokens.secrets(in: "\n \(token) \r\n\n\(token)x", name: "admin token").count == 2)
        for bad in ["", " \n\n", "\(token)\n\(token)\n\(token)", String(token.dropLast())] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try ServiceTokens.secrets(in: bad, name: "admin token") }
        }
        #expect(throws: ConfigurationError.self) {
            try ServiceTokens(.file("/nonexistent/admin-token"), name: "admin token", logger: Logger(label: "test"))
        }
    }
}
