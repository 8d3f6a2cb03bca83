@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

@Suite(.migratedDatabase, .heavy) struct CatalogueTests {
    /// Waits (bounded) until the instance has loaded the holders of a sold-out coupon: the catalogue
    /// has converged. (The promise is within a second; twenty are allowed before it counts as lost,
    /// since in CI every suite starts at once on two cores.)
    func waitForHolders(_ client: some TestClientProtocol, _ count: Int) async throws {
        try #require(try await waitUntil(.seconds(20), every: .milliseconds(20)) { try await client.holderHashes() == count },
                     "the instance did not load \(count) holders")
    }

    @Test(.migratedDatabase) func rejectsAfterSellOutCostNoTransactionsAndARetryOneRead() async throws {
        let url = TestDatabase.url
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
            try #require(try await client.waitForListener())
            let couponID = try await client.createCoupon(quantity: 100)
            let before = try await TestDatabase.statementsRun(databaseURL: url)
            for user in 0..<100 { #expect(try await client.issue(couponID, "winner-\(user)").status == .created) }
            let issuing = try await TestDatabase.statementsRun(databaseURL: url) - before
            #expect(issuing >= 300, "the measurement sees issuance: \(issuing) statements for 100 tickets (BEGIN, issue, COMMIT)")

            try await waitForHolders(client, 100)
            let soldOut = try await TestDatabase.statementsRun(databaseURL: url)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for user in 0..<2000 {
                    group.addTask {
                        let response = try await client.issue(couponID, "late-\(user)")
                        #expect(response.problemCode == "sold_out")
                    }
                }
                try await group.waitForAll()
            }
            for probe in 0..<200 {
                #expect(try await client.issue(900_000_000 + Int64(probe % 2), "x").problemCode == "coupon_not_found")
            }
            let rejecting = try await TestDatabase.statementsRun(databaseURL: url) - soldOut
            // 2200 answers; through the database these would be 6600 statements (BEGIN, issue,
            // COMMIT). What is left: the holder load, the first probe of each missing id, the
            // listener's clock reading and the pool's keep-alives.
            #expect(rejecting < 50, "\(rejecting) statements for 2200 answers from memory")

            let retried = try await TestDatabase.statementsRun(databaseURL: url)
            for user in 0..<100 {
                #expect(try await client.issue(couponID, "winner-\(user)").status == .ok)
            }
            let retrying = try await TestDatabase.statementsRun(databaseURL: url) - retried
            #expect(retrying <= 110, "\(retrying) statements for 100 winners' retries: one read of their ticket each")
            #expect(try await audit(url, couponID).isConsistent)
        }
    }

    /// The moment a coupon's holders are (re)loaded: every request that arrives meanwhile waits for
    /// that one load and is answered from memory; each used to read its user's ticket (issue 30: 879
    /// of 143,481 refusals at a 50,000-ticket sell-out). The test holds the load up with a lock on the
    /// ticket table, so the whole burst of 1,000 meets it (3,000 at once, beside every other suite,
    /// starved the concurrency tests of CI; bench/speed/sellout.sh measures the sell-out at scale).
    @Test(.migratedDatabase, .heavy) func refusalsDuringAHolderLoadWaitForItInsteadOfReadingTheDatabase() async throws {
        let url = TestDatabase.url
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
            try #require(try await client.waitForListener())
            let couponID = try await client.createCoupon(quantity: 100)
            for user in 0..<100 { #expect(try await client.issue(couponID, "winner-\(user)").status == .created) }
            try await waitForHolders(client, 100)
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { database in
                try await database.withConnection { blocker in
                    try await blocker.query("BEGIN", logger: TestDatabase.logger)
                    try await blocker.query("LOCK TABLE coupon_tickets IN ACCESS EXCLUSIVE MODE", logger: TestDatabase.logger)
                    // The row changes (its holders are then read again) and the instance hears of it.
                    try await database.query("UPDATE coupons SET name = name WHERE id = \(couponID)")
                    try await database.query("SELECT pg_notify('coupon_events', \(String(couponID)))")
                    try #require(try await waitUntil(.seconds(20), every: .milliseconds(10)) { try await Self.holderLoadWaits(url) },
                                 "the instance never began to load the holders again")
                    let before = try await TestDatabase.statementsRun(databaseURL: url)
                    let burst = Task {
                        try await withThrowingTaskGroup(of: String?.self) { group in
                            for user in 0..<1000 { group.addTask { try await client.issue(couponID, "late-\(user)").problemCode } }
                            return try await group.reduce(into: [String?]()) { $0.append($1) }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(500))  // the burst reaches the instance while the load waits
                    try await blocker.query("COMMIT", logger: TestDatabase.logger)
                    let codes = try await burst.value
                    #expect(codes.count == 1000 && codes.allSatisfy { $0 == "sold_out" })
                    let spent = try await TestDatabase.statementsRun(databaseURL: url) - before
                    #expect(spent <= 30, "\(spent) statements for 1,000 refusals, the holder load's included")
                }
            }
            #expect(try await client.holderHashes() == 100)
            #expect(try await audit(url, couponID).isConsistent)
        }
    }

    /// Whether a session of the database waits for a lock while it reads a coupon's holders.
    static func holderLoadWaits(_ url: String) async throws -> Bool {
        let name = String(URLComponents(string: url)!.path.dropFirst())
        return try await withPostgresClient(databaseURL: TestDatabaseURL.server, logger: TestDatabase.logger) { server in
            let rows = try await server.query(
                """
                SELECT count(*)::int FROM pg_stat_activity WHERE datname = \(name) AND wait_event_type = 'Lock'
                  AND query LIKE 'SELECT user_id FROM coupon_tickets%'
                """)
            for try await count in rows.decode(Int.self) { return count > 0 }
            return false
        }
    }

    @Test(.migratedDatabase) func aKilledListenerStillLetsTheReplenishmentOut() async throws {
        let url = TestDatabase.url
        try await buildApplication(TestArguments(databaseURL: url)).test(.router) { client in
            try #require(try await client.waitForListener())
            let couponID = try await client.createCoupon(quantity: 20)
            for user in 0..<20 { _ = try await client.issue(couponID, "first-\(user)") }
            try await waitForHolders(client, 20)
            #expect(try await client.issue(couponID, "late").problemCode == "sold_out")

            // A raise the listener never hears of: made with the triggers off (as a bulk load or a
            // restore may run), so no NOTIFY is sent and this instance still answers sold out from
            // memory. Only the reload after the listener's reconnect can find it; the ordinary
            // notification path cannot, so nothing races with the reconnect.
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { admin in
                try await admin.withConnection { connection in
                    try await connection.query("BEGIN", logger: TestDatabase.logger)
                    try await connection.query("SET LOCAL session_replication_role = replica", logger: TestDatabase.logger)
                    try await connection.query("SELECT add_coupon_tickets(\(couponID), 21, 25)", logger: TestDatabase.logger)
                    try await connection.query("UPDATE coupons SET quantity = 25 WHERE id = \(couponID)", logger: TestDatabase.logger)
                    try await connection.query("COMMIT", logger: TestDatabase.logger)
                }
            }
            #expect(try await client.issue(couponID, "unheard").problemCode == "sold_out", "the raise was not notified")
            #expect(try await client.metric("coupon_listener_connects_total") == 1)
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { admin in
                let rows = try await admin.query(
                    """
                    SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity
                    WHERE application_name = 'coupon-listener' AND datname = current_database()
                    """)
                for try await killed in rows.decode(Int.self) { #expect(killed == 1) }
            }
            // Nothing is asked while the listener is away (every request would go to the database
            // then, and be issued whatever the catalogue holds): only once it has connected a second
            // time, the catalogue reloaded and trusted.
            let reconnected = try await waitUntil(.seconds(30), every: .milliseconds(20)) {
                try await client.metric("coupon_listener_connects_total") == 2
            }
            try #require(reconnected, "the listener never reconnected")
            try #require(try await client.waitForListener())
            for user in 0..<5 {
                #expect(try await client.issue(couponID, "second-\(user)").status == .created, "the reload found the raise")
            }
            #expect(try await client.issue(couponID, "one-too-many").problemCode == "sold_out")
            #expect(try await audit(url, couponID) == .init(
                quantity: 25, issuedCount: 25, ticketRows: 25, ticketsHeld: 25, distinctUsers: 25))
        }
    }

    @Test(.migratedDatabase) func twoInstancesAgreeFromMemory() async throws {
        let url = TestDatabase.url
        try await withTwoInstances { a, b in
            let couponID = try await a.createCoupon(quantity: 30)
            let later = try await b.createCoupon(quantity: 5, startsAt: Date().addingTimeInterval(3600))
            var codes: [String: String] = [:]
            for user in 0..<30 {
                let response = try await a.issue(couponID, "w\(user)")
                #expect(response.status == .created)
                codes["w\(user)"] = try response.decode(TicketBody.self).ticket.code
            }
            try await waitForHolders(b, 30)

            let before = try await TestDatabase.statementsRun(databaseURL: url)
            for user in 0..<500 { #expect(try await b.issue(couponID, "l\(user)").problemCode == "sold_out") }
            for user in 0..<200 {
                #expect(try await a.issue(later, "early\(user)").problemCode == "not_started")
                #expect(try await b.issue(later, "early\(user)").problemCode == "not_started")
            }
            let spent = try await TestDatabase.statementsRun(databaseURL: url) - before
            #expect(spent < 50, "\(spent) statements for 900 answers from memory on two instances (2700 without)")

            let retried = try await TestDatabase.statementsRun(databaseURL: url)
            for (user, code) in codes {
                for instance in [a, b] as [any TestClientProtocol] {
                    let response = try await instance.issue(couponID, user)
                    #expect(response.status == .ok)
                    #expect(try response.decode(TicketBody.self).ticket.code == code)
                }
            }
            let retrying = try await TestDatabase.statementsRun(databaseURL: url) - retried
            #expect(retrying <= 70, "\(retrying) statements for 60 winners' retries: one read of their ticket each")

            // A sale about to open: refused until then, then open on both, with no restart
            // and no notification.
            // Whole seconds on the wire: it opens 4 to 5 seconds from now (time enough for the
            // creation and the two refusals in CI, with every suite running at once).
            let opensAt = Date().addingTimeInterval(5)
            let soon = try await b.createCoupon(quantity: 5, startsAt: opensAt)
            #expect(try await b.issue(soon, "too-early").problemCode == "not_started")
            #expect(try await a.issue(soon, "too-early").problemCode == "not_started")
            try await Task.sleep(until: .now + .seconds(max(0, opensAt.timeIntervalSinceNow) + 0.2))
            #expect(try await b.issue(soon, "on-time-b").status == .created)
            #expect(try await a.issue(soon, "on-time-a").status == .created)
            #expect(try await audit(url, soon).issuedCount == 2)
            #expect(try await audit(url, couponID).isConsistent)
        }
    }

    func audit(_ url: String, _ couponID: Int64) async throws -> TestDatabase.Audit {
        try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
            try await TestDatabase.audit(couponID: couponID, on: client)
        }
    }
}
