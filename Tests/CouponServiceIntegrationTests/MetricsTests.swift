@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// `/metrics` counts what the database holds.
@Suite(.migratedDatabase) struct MetricsTests {
    @Test func aSaleCanBeWatchedFromMetrics() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 3)
        try await buildApplication(TestArguments()).test(.router) { client in
            for user in ["m1", "m2", "m3", "m4", "m5", "m1"] {
                _ = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"\#(user)"}"#)
            }
            _ = try await client.send(.post, "/v1/coupons/9223372036854775807/issue", json: #"{"user_id":"m1"}"#)
            let response = try await client.send(.get, "/metrics")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let metrics = Exposition(String(buffer: response.body))

            let held = try await TestDatabase.audit(couponID: couponID).ticketsHeld
            #expect(held == 3)
            #expect(metrics["coupon_tickets_issued_total"] == Double(held))
            #expect(metrics[#"coupon_requests_refused_total{reason="sold_out"}"#] == 2)
            #expect(metrics[#"coupon_requests_refused_total{reason="coupon_not_found"}"#] == 1)
            #expect(metrics[#"coupon_requests_refused_total{reason="unavailable"}"#] == 0)
            #expect(metrics["coupon_issue_repeats_total"] == 1)
            #expect(metrics[#"coupon_sale_requests_total{coupon_id="\#(couponID)"}"#] == 6, "every request in the window, not the unknown coupon's")
            let sources = ["cache", "lookup", "database"]
            let answers = sources.map { metrics[#"coupon_issue_answers_total{source="\#($0)"}"#] ?? 0 }.reduce(0, +)
            #expect(answers == 7)
            let timed = sources.map { metrics[#"coupon_issue_duration_seconds_count{source="\#($0)"}"#] ?? 0 }.reduce(0, +)
            #expect(timed == 7)
            // The requests came one after another: every one the database answered was a group of its
            // own, and each group took one pooled connection.
            let fromDatabase = try #require(metrics[#"coupon_issue_answers_total{source="database"}"#])
            #expect(fromDatabase >= 3)
            #expect(metrics["coupon_issue_group_size_sum"] == fromDatabase)
            #expect(metrics["coupon_issue_group_size_count"] == fromDatabase)
            #expect(metrics["coupon_pool_wait_seconds_count"] == fromDatabase)
            #expect(metrics["coupon_listener_connected"] == 1)
            #expect(metrics["coupon_listener_connects_total"] == 1)
            #expect(metrics["coupon_database_synchronous_standbys"] == nil, "no writer asked for, no replication watched")
        }
    }

    /// With a URL that asks for a writer, the primary's synchronous standbys are read into a gauge: here
    /// none (one server), what the alert CouponReplicationNotSynchronous fires on. (With a standby: the
    /// fault scenario `failover`, 1 before the primary's host is lost and 0 on the promoted node alone.)
    @Test func theSynchronousStandbysAreReadWhenTheURLAsksForAWriter() async throws {
        let url = TestDatabase.url + (TestDatabase.url.contains("?") ? "&" : "?") + "target_session_attrs=read-write"
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
            let read = try await waitUntil(.seconds(20), every: .milliseconds(100)) {
                let response = try await client.send(.get, "/metrics")
                return Exposition(String(buffer: response.body))["coupon_database_synchronous_standbys"] == 0
            }
            #expect(read)
        }
    }
}

/// The samples of a Prometheus text exposition, by name and labels as written.
struct Exposition {
    var samples: [String: Double] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
    }

    subscript(sample: String) -> Double? { samples[sample] }
}
