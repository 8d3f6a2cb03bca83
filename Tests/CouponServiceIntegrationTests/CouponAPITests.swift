@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite(.migratedDatabase) struct CouponAPITests {
    struct CouponBody: Decodable, Equatable {
        var id: Int64
        var name: String
        var quantity: Int
        var issued: Int
        var remaining: Int
        var starts_at: String?
        var ends_at: String?
        var status: String
    }

    @Test func createShowAndResize() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let created = try await client.send(
                .post, "/v1/coupons", json: #"{"name":"Launch","quantity":3,"starts_at":"2020-01-01T00:00:00Z"}"#, admin: true)
            #expect(created.status == .created)
            let coupon = try created.decode(CouponBody.self)
            #expect(created.headers[.location] == "/v1/coupons/\(coupon.id)")
            #expect(coupon.quantity == 3 && coupon.issued == 0 && coupon.status == "open")
            #expect(coupon.starts_at == "2020-01-01T00:00:00.000Z" && coupon.ends_at == nil)
            #expect(try await TestDatabase.audit(couponID: coupon.id).ticketRows == 3)

            var answers: [String] = []
            for user in ["a", "b", "c", "d"] {
                let answer = try await client.send(.post, "/v1/coupons/\(coupon.id)/issue", json: #"{"user_id":"\#(user)"}"#)
                answers.append(answer.status == .created ? "201" : "\(answer.status.code) \(answer.problemCode ?? "")")
            }
            #expect(answers == ["201", "201", "201", "409 sold_out"])
            #expect(try await TestDatabase.heldCode(couponID: coupon.id, userID: "d") == nil)

            let below = try await client.send(.patch, "/v1/coupons/\(coupon.id)", json: #"{"quantity":2}"#, admin: true)
            #expect(below.status == .conflict)
            #expect(below.problemCode == "quantity_below_issued")

            let raised = try await client.send(.patch, "/v1/coupons/\(coupon.id)", json: #"{"quantity":5}"#, admin: true)
            #expect(raised.status == .ok)
            #expect(try raised.decode(CouponBody.self).remaining == 2)
            #expect(try await client.send(.post, "/v1/coupons/\(coupon.id)/issue", json: #"{"user_id":"d"}"#).status == .created)
            #expect(try await TestDatabase.audit(couponID: coupon.id) == .init(
                quantity: 5, issuedCount: 4, ticketRows: 5, ticketsHeld: 4, distinctUsers: 4))

            let lowered = try await client.send(.patch, "/v1/coupons/\(coupon.id)", json: #"{"quantity":4}"#, admin: true)
            #expect(try lowered.decode(CouponBody.self).status == "sold_out")
            #expect(try await TestDatabase.audit(couponID: coupon.id) == .init(
                quantity: 4, issuedCount: 4, ticketRows: 4, ticketsHeld: 4, distinctUsers: 4))
        }
    }

    @Test func ticketCodesAreDistinctAndLong() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 2000)
        let rows = try await TestDatabase.client.query(
            "SELECT count(DISTINCT code)::int, min(length(code))::int FROM coupon_tickets WHERE coupon_id = \(couponID)")
        for try await (distinct, shortest) in rows.decode((Int, Int).self) {
            #expect(distinct == 2000)
            #expect(shortest >= 16, "at least 64 bits in hex")
        }
    }

    /// Every bad input gets its 4xx problem and leaves the database as it was.
    @Test func badInputChangesNothing() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 5)
        let couponsBefore = try await TestDatabase.couponCount(named: "x")
        try await buildApplication(TestArguments()).test(.router) { client in
            let cases: [(HTTPRequest.Method, String, String?, Bool, HTTPResponse.Status, String)] = [
                (.post, "/v1/coupons", #"{"name":"x"}"#, true, .badRequest, "invalid_request"),
                (.post, "/v1/coupons", #"{"name":"x","quantity":0}"#, true, .badRequest, "invalid_request"),
                (.post, "/v1/coupons", #"{"name":"x","quantity":1000001}"#, true, .badRequest, "invalid_request"),
                (.post, "/v1/coupons", #"{"name":"x","quantity":5,"ends_at":"soon"}"#, true, .badRequest, "invalid_request"),
                (.post, "/v1/coupons", "not json", true, .badRequest, "invalid_request"),
                (.post, "/v1/coupons", #"{"name":"x","quantity":5}"#, false, .unauthorized, "unauthorized"),
                (.patch, "/v1/coupons/\(couponID)", #"{"quantity":-3}"#, true, .badRequest, "invalid_request"),
                (.patch, "/v1/coupons/\(couponID)", #"{"quantity":9}"#, false, .unauthorized, "unauthorized"),
                (.patch, "/v1/coupons/9223372036854775807", #"{"quantity":9}"#, true, .notFound, "coupon_not_found"),
                (.post, "/v1/coupons/\(couponID)/issue", #"{}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/\(couponID)/issue", #"{"user_id":""}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/\(couponID)/issue", #"{"user_id":"a b"}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/\(couponID)/issue", #"{"user_id":"\#(String(repeating: "u", count: 65))"}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/abc/issue", #"{"user_id":"u1"}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/0/issue", #"{"user_id":"u1"}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/18446744073709551616/issue", #"{"user_id":"u1"}"#, false, .badRequest, "invalid_request"),
                (.post, "/v1/coupons/9223372036854775807/issue", #"{"user_id":"u1"}"#, false, .notFound, "coupon_not_found"),
                (.get, "/v1/coupons/9223372036854775807", nil, false, .notFound, "coupon_not_found"),
                (.get, "/v1/coupons/-4", nil, false, .badRequest, "invalid_request"),
                (.get, "/v1/coupons/\(couponID)/tickets/nobody", nil, false, .notFound, "ticket_not_found"),
                (.get, "/v1/coupons/\(couponID)/tickets/bad%20user", nil, false, .badRequest, "invalid_request"),
                (.delete, "/v1/coupons/\(couponID)", nil, true, .methodNotAllowed, "method_not_allowed"),
                (.put, "/v1/coupons/\(couponID)/issue", #"{"user_id":"u1"}"#, false, .methodNotAllowed, "method_not_allowed"),
            ]
            for (method, uri, body, admin, status, code) in cases {
                let response = try await client.send(method, uri, json: body, admin: admin)
                #expect(response.status == status, "\(method) \(uri) \(body ?? "")")
                #expect(response.problemCode == code, "\(method) \(uri) \(body ?? "")")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
        }
        #expect(try await TestDatabase.couponCount(named: "x") == couponsBefore)
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 5, issuedCount: 0, ticketRows: 5, ticketsHeld: 0, distinctUsers: 0))
    }

    /// A statement that fails while it runs (after PostgreSQL described its rows) fails the request:
    /// its error is not left behind with rows nobody reads, and nothing is kept.
    @Test(.migratedDatabase) func aCouponWhoseTicketsCannotBeWrittenIsNotCreated() async throws {
        try await TestDatabase.client.query(
            """
            CREATE OR REPLACE FUNCTION add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint)
            RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no tickets today'; END; $$
            """)
        try await buildApplication(TestArguments()).test(.router) { client in
            let created = try await client.send(.post, "/v1/coupons", json: #"{"name":"x","quantity":3}"#, admin: true)
            #expect(created.status == .internalServerError)
            #expect(try await TestDatabase.couponCount(named: "x") == 0)
        }
    }
}
