@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

private struct Created: Decodable { var id: Int64 }
private struct Ready: Decodable { var listener: String? }

/// The in-memory catalogue kept by LISTEN/NOTIFY, measured on databases of their own so that
/// `pg_stat_database.xact_commit` counts only these instances.
@Suite struct CatalogueTests {
    func issue(_ client: some TestClientProtocol, _ couponID: Int64, _ user: String) async throws -> TestResponse {
        try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"\#(user)"}"#)
    }

    func createCoupon(_ client: some TestClientProtocol, quantity: Int, startsAt: String? = nil) async throws -> Int64 {
        let window = startsAt.map { #","starts_at":"\#($0)""# } ?? ""
        let response = try await client.send(.post, "/v1/coupons", json: #"{"name":"c","quantity":\#(quantity)\#(window)}"#, admin: true)
        return try response.decode(Created.self).id
    }

    /// Waits (bounded) until the instance's listener has connected and loaded the catalogue.
    func waitForListener(_ client: some TestClientProtocol) async throws {
        for _ in 0..<100 {
            if try await client.send(.get, "/readyz").decode(Ready.self).listener == "connected" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the listener did not connect within 5 s")
    }

    /// Convergence is promised within a second; give it a little more, then measure.
    func settle() async throws { try await Task.sleep(for: .milliseconds(1200)) }

    @Test func rejectsAfterSellOutCostNoTransactionsAndARetryOneRead() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
                try await waitForListener(client)
                let couponID = try await createCoupon(client, quantity: 100)
                let before = try await TestDatabase.statementsRun(databaseURL: url)
                for user in 0..<100 { #expect(try await issue(client, couponID, "winner-\(user)").status == .created) }
                let issuing = try await TestDatabase.statementsRun(databaseURL: url) - before
                #expect(issuing >= 300, "the measurement sees issuance: \(issuing) statements for 100 tickets (BEGIN, issue, COMMIT)")

                try await settle()
                let soldOut = try await TestDatabase.statementsRun(databaseURL: url)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for user in 0..<2000 {
                        group.addTask {
                            let response = try await issue(client, couponID, "late-\(user)")
                            #expect(response.problemCode == "sold_out")
                        }
                    }
                    try await group.waitForAll()
                }
                for probe in 0..<200 {
                    #expect(try await issue(client, 900_000_000 + Int64(probe % 2), "x").problemCode == "coupon_not_found")
                }
                let rejecting = try await TestDatabase.statementsRun(databaseURL: url) - soldOut
                // 2200 answers; through the database these would be 6600 statements (BEGIN, issue,
                // COMMIT). What is left: the holder load, the first probe of each missing id, the
                // listener's clock reading and the pool's keep-alives.
                #expect(rejecting < 50, "\(rejecting) statements for 2200 answers from memory")

                let retried = try await TestDatabase.statementsRun(databaseURL: url)
                for user in 0..<100 {
                    #expect(try await issue(client, couponID, "winner-\(user)").status == .ok)
                }
                let retrying = try await TestDatabase.statementsRun(databaseURL: url) - retried
                #expect(retrying <= 110, "\(retrying) statements for 100 winners' retries: one read of their ticket each")
                #expect(try await audit(url, couponID).isConsistent)
            }
        }
    }

    @Test func aKilledListenerStillLetsTheReplenishmentOut() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
                try await waitForListener(client)
                let couponID = try await createCoupon(client, quantity: 20)
                for user in 0..<20 { _ = try await issue(client, couponID, "first-\(user)") }
                try await settle()
                #expect(try await issue(client, couponID, "late").problemCode == "sold_out")

                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { admin in
                    let rows = try await admin.query(
                        """
                        SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity
                        WHERE application_name = 'coupon-listener' AND datname = current_database()
                        """)
                    for try await killed in rows.decode(Int.self) { #expect(killed == 1) }
                }
                // The PATCH goes through another instance's hands in real life: keep this one's own
                // shortcut out of it by raising the quantity in SQL, as an operator might.
                try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { admin in
                    let resized = try await CouponStore(client: admin, logger: TestDatabase.logger).resize(id: couponID, quantity: 25)
                    #expect(resized != .notFound)
                }
                var issued = 0
                var user = 0
                // Bounded: the promise is one second; allow five before calling it lost.
                let deadline = ContinuousClock.now + .seconds(5)
                while issued < 5 && ContinuousClock.now < deadline {
                    if try await issue(client, couponID, "second-\(user)").status == .created { issued += 1 }
                    user += 1
                }
                #expect(issued == 5)
                #expect(try await issue(client, couponID, "one-too-many").problemCode == "sold_out")
                #expect(try await audit(url, couponID) == .init(
                    quantity: 25, issuedCount: 25, ticketRows: 25, ticketsHeld: 25, distinctUsers: 25))
                try await waitForListener(client)
            }
        }
    }

    @Test func twoInstancesAgreeFromMemory() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            try await buildApplication(TestArguments(databaseURL: url)).test(.router) { a in
                try await buildApplication(TestArguments(databaseURL: url)).test(.router) { b in
                    try await waitForListener(a)
                    try await waitForListener(b)
                    let couponID = try await createCoupon(a, quantity: 30)
                    let later = try await createCoupon(b, quantity: 5, startsAt: Date().addingTimeInterval(3600).formatted(.iso8601))
                    var codes: [String: String] = [:]
                    for user in 0..<30 {
                        let response = try await issue(a, couponID, "w\(user)")
                        #expect(response.status == .created)
                        codes["w\(user)"] = try response.decode(TicketBody.self).ticket.code
                    }
                    try await settle()

                    let before = try await TestDatabase.statementsRun(databaseURL: url)
                    for user in 0..<500 { #expect(try await issue(b, couponID, "l\(user)").problemCode == "sold_out") }
                    for user in 0..<200 {
                        #expect(try await issue(a, later, "early\(user)").problemCode == "not_started")
                        #expect(try await issue(b, later, "early\(user)").problemCode == "not_started")
                    }
                    let spent = try await TestDatabase.statementsRun(databaseURL: url) - before
                    #expect(spent < 50, "\(spent) statements for 900 answers from memory on two instances (2700 without)")

                    let retried = try await TestDatabase.statementsRun(databaseURL: url)
                    for (user, code) in codes {
                        for instance in [a, b] as [any TestClientProtocol] {
                            let response = try await issue(instance, couponID, user)
                            #expect(response.status == .ok)
                            #expect(try response.decode(TicketBody.self).ticket.code == code)
                        }
                    }
                    let retrying = try await TestDatabase.statementsRun(databaseURL: url) - retried
                    #expect(retrying <= 70, "\(retrying) statements for 60 winners' retries: one read of their ticket each")

                    // A sale about to open: refused until then, then open on both, with no restart
                    // and no notification.
                    // Whole seconds on the wire: it opens 2 to 3 seconds from now.
                    let opensAt = Date().addingTimeInterval(3)
                    let soon = try await createCoupon(b, quantity: 5, startsAt: opensAt.formatted(.iso8601))
                    #expect(try await issue(b, soon, "too-early").problemCode == "not_started")
                    #expect(try await issue(a, soon, "too-early").problemCode == "not_started")
                    try await Task.sleep(until: .now + .seconds(max(0, opensAt.timeIntervalSinceNow) + 0.2))
                    #expect(try await issue(b, soon, "on-time-b").status == .created)
                    #expect(try await issue(a, soon, "on-time-a").status == .created)
                    #expect(try await audit(url, soon).issuedCount == 2)
                    #expect(try await audit(url, couponID).isConsistent)
                }
            }
        }
    }

    func audit(_ url: String, _ couponID: Int64) async throws -> TestDatabase.Audit {
        try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
            try await TestDatabase.audit(couponID: couponID, on: client)
        }
    }
}
