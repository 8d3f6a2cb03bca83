@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Synchronization
import Testing

/// Sale control (`PATCH /v1/coupons/{id}` with a window, `POST /v1/coupons/{id}/close`): a mistimed
/// or stuck sale is moved or ended by an admin, on every instance, with nothing issued after the end.
@Suite struct SaleControlTests {
    struct CouponBody: Decodable {
        var starts_at: String?
        var ends_at: String?
        var status: String
        var issued: Int
    }

    /// The answers of a load, and the word to stop it.
    final class Load: Sendable {
        let stop = Atomic(false)
        let answers = Mutex<[(user: String, status: HTTPResponse.Status, code: String?)]>([])
    }

    /// Two instances sell while an admin closes the sale on one of them: every 201 is a ticket the
    /// database holds, none was issued at or after the close, and both instances refuse `ended` at once.
    @Test(.migratedDatabase) func aCloseEndsTheSaleOnEveryInstanceUnderLoad() async throws {
        try await withTwoInstances { a, b in
            let couponID = try await a.createCoupon(quantity: 100_000)
            let load = Load()
            let closed = try await withThrowingTaskGroup(of: Void.self) { group -> TestResponse in
                for worker in 0..<16 {
                    let instance: any TestClientProtocol = worker % 2 == 0 ? a : b
                    group.addTask {
                        var sent = 0
                        while !load.stop.load(ordering: .relaxed) {
                            let user = "load-\(worker)-\(sent)"
                            sent += 1
                            let response = try await instance.issue(couponID, user)
                            load.answers.withLock { $0.append((user, response.status, response.problemCode)) }
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(400))
                let closed = try await a.send(.post, "/v1/coupons/\(couponID)/close", admin: true)
                // The load goes on past the close, on both instances.
                try await Task.sleep(for: .milliseconds(400))
                load.stop.store(true, ordering: .relaxed)
                try await group.waitForAll()
                return closed
            }
            #expect(closed.status == .ok)
            let coupon = try closed.decode(CouponBody.self)
            #expect(coupon.status == "ended")
            let endsAt = try #require(coupon.ends_at.flatMap(RFC3339.date))

            let all = load.answers.withLock { $0 }
            let created = Set(all.filter { $0.status == .created }.map(\.user))
            #expect(!created.isEmpty, "the load issued nothing before the close")
            #expect(all.contains { $0.code == "ended" }, "no request met the closed sale")
            #expect(all.allSatisfy { $0.status == .created || $0.code == "ended" }, "an answer other than 201 or ended")

            // The database: exactly the users told 201 hold a ticket, none issued at or after the end.
            let rows = try await TestDatabase.client.query(
                "SELECT user_id, issued_at FROM coupon_tickets WHERE coupon_id = \(couponID) AND user_id IS NOT NULL")
            var held: Set<String> = []
            var latest = Date.distantPast
            for try await (user, issuedAt) in rows.decode((String, Date).self) {
                held.insert(user)
                latest = max(latest, issuedAt)
            }
            #expect(held == created)
            #expect(latest < endsAt, "a ticket issued at \(latest), the sale closed at \(endsAt)")
            #expect(try await TestDatabase.audit(couponID: couponID).isConsistent)

            // At once on both instances, and again for nobody: closing a closed sale changes nothing.
            for instance in [a, b] as [any TestClientProtocol] {
                #expect(try await instance.issue(couponID, "after-the-close").problemCode == "ended")
            }
            let again = try await b.send(.post, "/v1/coupons/\(couponID)/close", admin: true)
            #expect(try again.decode(CouponBody.self).ends_at == coupon.ends_at)
        }
    }

    /// A window moved on one instance is followed by the other: postponed, reopened, cleared.
    @Test(.migratedDatabase) func aMovedWindowIsFollowedByEveryInstance() async throws {
        try await withTwoInstances { a, b in
            let couponID = try await a.createCoupon(quantity: 10)
            #expect(try await b.issue(couponID, "early").status == .created)

            // Postponed by an hour while open: both refuse not_started.
            let later = RFC3339.string(Date().addingTimeInterval(3600))
            let postponed = try await a.send(.patch, "/v1/coupons/\(couponID)", json: #"{"starts_at":"\#(later)"}"#, admin: true)
            #expect(try postponed.decode(CouponBody.self).status == "scheduled")
            #expect(try await a.issue(couponID, "a1").problemCode == "not_started")
            #expect(try await waitUntil(.seconds(5)) { try await b.issue(couponID, "b1").problemCode == "not_started" })

            // Ended a minute ago, then reopened by clearing both bounds.
            let past = RFC3339.string(Date().addingTimeInterval(-60))
            let ended = try await a.send(
                .patch, "/v1/coupons/\(couponID)", json: #"{"starts_at":null,"ends_at":"\#(past)"}"#, admin: true)
            #expect(try ended.decode(CouponBody.self).status == "ended")
            #expect(try await waitUntil(.seconds(5)) { try await b.issue(couponID, "b2").problemCode == "ended" })
            let reopened = try await b.send(.patch, "/v1/coupons/\(couponID)", json: #"{"ends_at":null}"#, admin: true)
            #expect(try reopened.decode(CouponBody.self).status == "open")
            #expect(try await waitUntil(.seconds(5)) { try await a.issue(couponID, "a3").status == .created })
            #expect(try await b.issue(couponID, "early").status == .ok)
            #expect(try await TestDatabase.audit(couponID: couponID).issuedCount == 2)
        }
    }

    /// What a stranger or a bad window gets: a clear 4xx, and the coupon as it was.
    @Test(.migratedDatabase) func aBadWindowOrAStrangerChangesNothing() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let starts = Date().addingTimeInterval(3600)
            let couponID = try await client.createCoupon(quantity: 5, startsAt: starts, endsAt: starts.addingTimeInterval(3600))
            let before = try await client.send(.get, "/v1/coupons/\(couponID)").body
            let path = "/v1/coupons/\(couponID)"
            // One bound past the coupon's other: a conflict with the coupon as it is.
            for body in [
                #"{"ends_at":"\#(RFC3339.string(starts.addingTimeInterval(-1)))"}"#,
                #"{"starts_at":"\#(RFC3339.string(starts.addingTimeInterval(7200)))"}"#,
            ] {
                let response = try await client.send(.patch, path, json: body, admin: true)
                #expect(response.status == .conflict, "\(body)")
                #expect(response.problemCode == "window_out_of_order", "\(body)")
            }
            // A body that is wrong by itself: ends before it starts, not an instant, past year 9999.
            for body in [
                #"{"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}"#,
                #"{"ends_at":"tomorrow"}"#, #"{"starts_at":1}"#, #"{"ends_at":"10000-01-01T00:00:00Z"}"#,
            ] {
                let response = try await client.send(.patch, path, json: body, admin: true)
                #expect(response.status == .badRequest, "\(body)")
                #expect(response.problemCode == "invalid_request", "\(body)")
            }
            #expect(try await client.send(.patch, path, json: #"{"ends_at":null}"#).status == .unauthorized)
            #expect(try await client.send(.post, "\(path)/close").status == .unauthorized)
            #expect(try await client.send(.post, "/v1/coupons/999999999/close", admin: true).problemCode == "coupon_not_found")
            #expect(try await client.send(.get, "\(path)/close", admin: true).status == .methodNotAllowed)
            #expect(try await client.send(.get, path).body == before)

            // A sale closed before it opened ends without opening.
            let closed = try await client.send(.post, "\(path)/close", admin: true).decode(CouponBody.self)
            #expect(closed.status == "ended")
            #expect(closed.starts_at == nil)
            #expect(try await client.issue(couponID, "too-late").problemCode == "ended")
        }
    }
}
