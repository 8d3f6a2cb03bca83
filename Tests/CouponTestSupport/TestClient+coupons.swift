import CouponService
import Foundation
import Hummingbird
import HummingbirdTesting

/// The requests the integration tests send again and again.
extension TestClientProtocol {
    /// `POST /v1/coupons/{id}/issue` for one user.
    package func issue(_ couponID: Int64, _ userID: String) async throws -> TestResponse {
        try await send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"\#(userID)"}"#)
    }

    /// Creates a coupon through the API (admin); returns its id.
    package func createCoupon(quantity: Int, startsAt: Date? = nil, endsAt: Date? = nil) async throws -> Int64 {
        var fields = [#""name":"c""#, #""quantity":\#(quantity)"#]
        if let startsAt { fields.append(#""starts_at":"\#(startsAt.formatted(.iso8601))""#) }
        if let endsAt { fields.append(#""ends_at":"\#(endsAt.formatted(.iso8601))""#) }
        return try await send(.post, "/v1/coupons", json: "{\(fields.joined(separator: ","))}", admin: true).decode(CreatedCoupon.self).id
    }

    /// Waits (bounded) until the instance's catalogue listener has connected and loaded the catalogue.
    /// The bound is generous: a listener that first met a dead host reconnects with backoff, and in
    /// CI every suite starts at once (5 s was once too short there).
    package func waitForListener() async throws -> Bool {
        return try await waitUntil(.seconds(20), every: .milliseconds(20)) {
            try await send(.get, "/readyz", admin: true).decode(Readiness.self).listener == "connected"
        }
    }

    /// A sample without labels from the instance's `/metrics`.
    package func metric(_ name: String) async throws -> Double? {
        let text = String(buffer: try await send(.get, "/metrics").body)
        let line = text.split(separator: "\n").first { $0.hasPrefix("\(name) ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// How many holders of final coupons the instance keeps in memory.
    package func holderHashes() async throws -> Int? {
        try await metric("coupon_catalogue_holder_hashes").map { Int($0) }
    }
}

private struct CreatedCoupon: Decodable { var id: Int64 }
private struct Readiness: Decodable { var listener: String? }

/// Two instances of the service on one database (the running suite's unless one is named), each with
/// its catalogue listener connected: where every test of several instances starts.
package func withTwoInstances(
    databaseURL: String? = nil, _ body: @escaping @Sendable (any TestClientProtocol, any TestClientProtocol) async throws -> Void
) async throws {
    let url = databaseURL ?? TestDatabaseURL.current ?? TestDatabaseURL.server
    try await buildApplication(TestArguments(databaseURL: url)).test(.router) { a in
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { b in
            for instance in [a, b] as [any TestClientProtocol] where try await !instance.waitForListener() {
                throw TestSetupError("an instance's catalogue listener did not connect within 20 s")
            }
            try await body(a, b)
        }
    }
}
