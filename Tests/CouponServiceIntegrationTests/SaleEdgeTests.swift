@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Testing

/// The edges of a sale window: judged on the database's clock, under the coupon's lock, and the
/// holders of an ended sale read only once no issuer is still in flight.
@Suite(.migratedDatabase, .heavy) struct SaleEdgeTests {
    /// A whole second at least `seconds` from now: RFC 3339 on the wire here has whole seconds.
    func wholeSecond(after seconds: TimeInterval) -> Date {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + seconds).rounded(.up))
    }

    func sleep(until date: Date) async throws {
        try await Task.sleep(for: .seconds(max(0, date.timeIntervalSinceNow)))
    }

    @Test func aLockGrantedAtTheEndIssuesNothing() async throws {
        let client = TestDatabase.client
        let couponID = try await TestDatabase.makeCoupon(quantity: 5, endsAt: Date().addingTimeInterval(3600))
        try await withPostgresClient(databaseURL: TestDatabase.url, logger: TestDatabase.logger) { other in
            try await other.withConnection { connection in
                try await connection.query("BEGIN", logger: TestDatabase.logger)
                let locked = try await connection.query(
                    "SELECT pg_backend_pid() FROM coupons WHERE id = \(couponID) FOR NO KEY UPDATE", logger: TestDatabase.logger)
                let holder = try #require(try await locked.decode(Int32.self).first(where: { _ in true }))
                let issuance = Task {
                    try await IssuanceStore(database: .running(client), metrics: CouponMetrics()).issue(couponID: couponID, userIDs: ["late"])
                }
                let waiting = try await waitUntil {
                    let rows = try await client.query(
                        """
                        SELECT count(*)::int FROM pg_stat_activity WHERE \(holder) = ANY (pg_blocking_pids(pid))
                        """)
                    return try await rows.decode(Int.self).first(where: { _ in true }) == 1
                }
                try #require(waiting, "the issuer never queued on the coupon's lock")
                // The sale ends while the issuer waits: its transaction began before the end, its lock
                // is granted after it.
                let ends = try await connection.query(
                    """
                    UPDATE coupons SET ends_at = clock_timestamp() + interval '300 milliseconds' WHERE id = \(couponID)
                    RETURNING ends_at, (SELECT max(xact_start) FROM pg_stat_activity
                                        WHERE \(holder) = ANY (pg_blocking_pids(pid))) < ends_at
                    """, logger: TestDatabase.logger)
                var endsAt = Date.distantFuture
                for try await (end, begunBefore) in ends.decode((Date, Bool).self) {
                    endsAt = end
                    #expect(begunBefore, "the issuer's transaction began before the end")
                }
                try await sleep(until: endsAt.addingTimeInterval(0.1))
                try await connection.query("COMMIT", logger: TestDatabase.logger)
                #expect(try await issuance.value.mapValues(\.outcome) == ["late": .ended])
            }
        }
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 5, issuedCount: 0, ticketRows: 5, ticketsHeld: 0, distinctUsers: 0))
    }

    @Test(.migratedDatabase) func aWinnerWhoseGroupCommitsAfterTheEndIsServedByEveryInstance() async throws {
        let url = TestDatabase.url
        try await withTwoInstances { a, b in
            let instances: [any TestClientProtocol] = [a, b]
            let endsAt = wholeSecond(after: 3)
            let couponID = try await a.createCoupon(quantity: 10, endsAt: endsAt)
            let winners = ["w1", "w2", "w3"]

            // A group that holds the coupon's lock across the end: issued before it, committed after.
            try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { other in
                try await other.withConnection { connection in
                    try await connection.query("BEGIN", logger: TestDatabase.logger)
                    let rows = try await connection.query(
                        "SELECT outcome FROM issue_tickets(\(couponID), \(winners))", logger: TestDatabase.logger)
                    var outcomes: [String] = []
                    for try await outcome in rows.decode(String.self) { outcomes.append(outcome) }
                    #expect(outcomes == ["issued", "issued", "issued"])
                    try await sleep(until: endsAt.addingTimeInterval(1))
                    // Every instance now knows the sale ended and wants its holders.
                    for instance in instances {
                        #expect(try await instance.issue(couponID, "loser").problemCode == "ended")
                    }
                    // Both instances' holder loads wait on the coupon's row lock before this group commits.
                    let waiting = try await waitUntil {
                        let rows = try await other.query(
                            "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
                        for try await count in rows.decode(Int.self) { return count >= instances.count }
                        return false
                    }
                    #expect(waiting, "the holder loads did not wait for the group")
                    try await connection.query("COMMIT", logger: TestDatabase.logger)
                }
            }

            for instance in instances {
                #expect(await waitUntil { (try? await instance.holderHashes()) == 3 }, "the holders are loaded once the group committed")
                for winner in winners {
                    let response = try await instance.issue(couponID, winner)
                    #expect(response.status == .ok, "\(winner)'s retry")
                    let held = try await TestDatabase.heldCode(couponID: couponID, userID: winner, databaseURL: url)
                    #expect(try response.decode(TicketBody.self).ticket.code == held)
                }
            }
            let before = try await TestDatabase.statementsRun(databaseURL: url)
            for user in 0..<200 {
                let instance = instances[user % 2]
                let response = try await instance.issue(couponID, "l\(user)")
                #expect(response.problemCode == "ended")
            }
            let spent = try await TestDatabase.statementsRun(databaseURL: url) - before
            #expect(spent < 20, "\(spent) statements for 200 losers answered from memory")
            let audit = try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) {
                try await TestDatabase.audit(couponID: couponID, on: $0)
            }
            #expect(audit == .init(quantity: 10, issuedCount: 3, ticketRows: 10, ticketsHeld: 3, distinctUsers: 3))
        }
    }

    @Test(.migratedDatabase, arguments: [-3.0, 3.0])
    func aSkewedInstanceOpensAndClosesWithTheDatabase(skew: TimeInterval) async throws {
        let url = TestDatabase.url
        let clock = DatabaseClock(localClock: { Date().addingTimeInterval(skew) })
        let catalogue = CouponCatalogue(clock: clock)
        try await withPostgresClient(databaseURL: url, logger: TestDatabase.logger) { client in
            let listener = try CatalogueListener(
                primary: .running(client, url: url), catalogue: catalogue, logger: TestDatabase.logger, metrics: CouponMetrics())
            let running = Task { try await listener.run() }
            defer { running.cancel() }
            try #require(await waitUntil { catalogue.listenerState == .connected })
            // A loaded machine may miss the first measurements' 100 ms round trip: one every 2 s follows.
            try #require(await waitUntil(.seconds(30)) { clock.offset != nil })
            let offset = try #require(clock.offset)
            #expect(abs(offset + skew) < 0.1, "measured \(offset) s for a clock \(skew) s off")

            // Far enough ahead that a loaded machine still learns of the coupon before it opens.
            let startsAt = Date().addingTimeInterval(8)
            let endsAt = startsAt.addingTimeInterval(1.5)
            let couponID = try await CouponStore(database: .running(client))
                .create(name: "skew", quantity: 5, startsAt: startsAt, endsAt: endsAt).id
            try #require(
                await waitUntil { catalogue.answer(couponID: couponID, userID: "u") == .refused(.notStarted) },
                "the catalogue did not learn of the coupon before it opened")
            var refusedEarly = 0, refusedLate = 0
            while Date() < endsAt.addingTimeInterval(1) {
                let answer = catalogue.answer(couponID: couponID, userID: "u")
                let now = Date()  // this machine's clock is the database's
                if now >= startsAt, now < endsAt {
                    #expect(answer == nil, "refused \(answer.map { "\($0)" } ?? "") from memory while the database would issue")
                }
                if now < startsAt.addingTimeInterval(-0.5), answer == .refused(.notStarted) { refusedEarly += 1 }
                if now > endsAt.addingTimeInterval(0.5), [.refused(.ended), .refusedUnlessHolder(.ended), .refusedOnceHoldersLoad(.ended)].contains(answer) {
                    refusedLate += 1
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            // Beside every other suite, a clock reading can take longer than the catalogue trusts, and
            // it asks the database meanwhile: the refusal from memory may come later, not never.
            let late = await waitUntil(.seconds(20)) {
                [.refused(.ended), .refusedUnlessHolder(.ended), .refusedOnceHoldersLoad(.ended)].contains(catalogue.answer(couponID: couponID, userID: "u"))
            }
            #expect(refusedEarly > 0 && (refusedLate > 0 || late), "outside the window it still refuses from memory")
        }
    }
}
