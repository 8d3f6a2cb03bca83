@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Error mapping through the real router, with no database behind it (port 1 refuses connections).
@Suite struct ProblemAnswerTests {
    static let nowhere = TestArguments(
        databaseURL: "postgres://postgres@127.0.0.1:1/none", databaseTimeout: .milliseconds(500))

    @Test func unknownRouteIsAProblem() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let response = try await client.send(.get, "/v2/nothing")
            #expect(response.status == .notFound)
            #expect(response.headers[.contentType] == "application/problem+json")
            #expect(response.problemCode == "not_found")
        }
    }

    @Test func anUnservedMethodIs405WithAllow() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let response = try await client.execute(uri: "/v1/coupons/1", method: .delete)
            #expect(response.status == .methodNotAllowed)
            #expect(response.headers[.allow] == "GET, PATCH")
            #expect(response.problemCode == "method_not_allowed")
            let query = try await client.execute(uri: "/healthz", method: HTTPRequest.Method("QUERY")!)
            #expect(query.status == .methodNotAllowed && query.headers[.allow] == "GET")
        }
    }

    @Test func adminRoutesNeedTheToken() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let none = try await client.send(.post, "/v1/coupons", json: #"{"name":"x","quantity":1}"#)
            #expect(none.status == .unauthorized)
            #expect(none.problemCode == "unauthorized")
            #expect(none.headers[.wwwAuthenticate] == "Bearer")
            let wrong = try await client.execute(
                uri: "/v1/coupons/1", method: .patch,
                headers: [.authorization: "Bearer test-admin-tokem", .contentType: "application/json"],
                body: ByteBuffer(string: #"{"quantity":5}"#))
            #expect(wrong.status == .unauthorized)
        }
    }

    @Test func adminRoutesAreClosedWithoutAToken() async throws {
        var arguments = Self.nowhere
        arguments.adminToken = nil
        try await buildApplication(arguments).test(.router) { client in
            let response = try await client.send(.post, "/v1/coupons", json: #"{"name":"x","quantity":1}"#, admin: true)
            #expect(response.status == .forbidden)
            #expect(response.problemCode == "admin_disabled")
        }
    }

    @Test func bodiesOver64KiBAreRefused() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let big = #"{"user_id":"u1","pad":""# + String(repeating: "x", count: 70_000) + #""}"#
            let response = try await client.send(.post, "/v1/coupons/1/issue", json: big)
            #expect(response.status == .contentTooLarge)
            #expect(response.problemCode == "body_too_large")
        }
    }

    @Test func nonJSONBodiesAreRefused() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/coupons/1/issue", method: .post, headers: [.contentType: "text/plain"],
                body: ByteBuffer(string: #"{"user_id":"u1"}"#))
            #expect(response.status == .unsupportedMediaType)
            #expect(response.problemCode == "unsupported_media_type")
        }
    }

    @Test func validationComesBeforeTheDatabase() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let response = try await client.send(.post, "/v1/coupons/12345678901234567890/issue", json: #"{"user_id":"u1"}"#)
            #expect(response.status == .badRequest)
            #expect(response.problemCode == "invalid_request")
        }
    }

    /// A request that hung would never come back: the time limit turns that into a failure.
    @Test(.timeLimit(.minutes(1))) func anUnreachableDatabaseIsA503() async throws {
        try await buildApplication(Self.nowhere).test(.router) { client in
            let response = try await client.send(.post, "/v1/coupons/1/issue", json: #"{"user_id":"u1"}"#)
            #expect(response.status == .serviceUnavailable)
            #expect(response.problemCode == "unavailable")
            #expect(response.headers[.retryAfter] == "1")
            let ready = try await client.send(.get, "/readyz")
            #expect(ready.status == .serviceUnavailable)
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }
    }
}
