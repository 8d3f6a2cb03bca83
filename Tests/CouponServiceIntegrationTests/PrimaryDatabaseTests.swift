@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

/// The database host written to, among several: the first that accepts writes, and a server that
/// stops accepting them is a 503, never a 500. (A real failover, under pg_auto_failover: the fault
/// scenario `failover`.)
@Suite struct PrimaryDatabaseTests {
    struct Readiness: Decodable {
        var primary: String?
        var primary_switches: Int?
    }

    /// The suite's database URL with a host in front of it that nothing listens on.
    func withDeadHostFirst(_ url: String, attrs: String) throws -> String {
        let parsed = try DatabaseURL(url)
        let host = parsed.hosts[0]
        return url.replacingOccurrences(of: "@\(host.name):\(host.port)/", with: "@127.0.0.1:9,\(host.name):\(host.port)/")
            + (url.contains("?") ? "&" : "?") + "target_session_attrs=\(attrs)"
    }

    @Test(.migratedDatabase, arguments: ["read-write", "primary", "any"])
    func theFirstHostThatIsWantedIsUsed(attrs: String) async throws {
        let url = try withDeadHostFirst(TestDatabase.url, attrs: attrs)
        let real = try DatabaseURL(TestDatabase.url).hosts[0]
        // A short deadline: a request that meets the dead host gives up soon.
        try await buildApplication(TestArguments(databaseURL: url, databaseTimeout: .seconds(2))).test(.router) { client in
            // Each /readyz may wait for the dead host up to the database deadline before it answers.
            let found = try await waitUntil(.seconds(40), every: .milliseconds(50)) {
                try await client.send(.get, "/readyz", admin: true).decode(Readiness.self).primary == "\(real)"
            }
            #expect(found, "the instance moved to the host that answers")
            try #require(try await client.waitForListener())
            let couponID = try await client.createCoupon(quantity: 2)
            let issued = try await client.issue(couponID, "after-the-dead-host")
            #expect(issued.status == .created, "\(String(buffer: issued.body))")
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 1)
            #expect(try await client.send(.get, "/readyz", admin: true).decode(Readiness.self).primary_switches == 1)
        }
    }

    /// Hosts are tried in the order the URL writes them, as libpq does: the first one wanted becomes
    /// current, and a current host that stays wanted is kept (the same server, under two names).
    @Test(.migratedDatabase) func hostsAreTriedInTheOrderWritten() async throws {
        let real = try DatabaseURL(TestDatabase.url).hosts[0]
        let named = "localhost:\(real.port)", numbered = "127.0.0.1:\(real.port)"
        let cases: [(hosts: [String], current: String, switches: Int)] = [
            (["127.0.0.1:9", named, numbered], named, 1),
            (["127.0.0.1:9", numbered, named], numbered, 1),
            ([named, "127.0.0.1:9", numbered], named, 0),
        ]
        for (hosts, current, switches) in cases {
            let url = try DatabaseURL(
                TestDatabase.url.replacingOccurrences(of: "@\(real.name):\(real.port)/", with: "@\(hosts.joined(separator: ","))/"))
            #expect(try await PrimaryDatabase.firstWanted(in: url, logger: TestDatabase.logger).description == current, "\(hosts)")
            // A host slower to answer than the check's deadline is not wanted: a loaded machine gets time.
            let primary = PrimaryDatabase(url: url, logger: TestDatabase.logger, checkTimeout: .seconds(15))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await primary.run() }
                defer { group.cancelAll() }
                let settled = await waitUntil(.seconds(40)) { primary.status.host.description == current }
                #expect(settled, "\(hosts): \(primary.status.host)")
                // Two checks later nothing moved: a wanted current host is kept.
                try await Task.sleep(for: primary.checkInterval * 2)
                #expect(primary.status.host.description == current && primary.status.switches == switches, "\(hosts)")
                var answered: Bool?
                for try await one in try await primary.client.query("SELECT true").decode(Bool.self) { answered = one }
                #expect(answered == true)
            }
        }
    }

    /// A server that turns read-only under the pool (as an old primary that comes back as a standby
    /// does) answers 25006: a 503 with Retry-After, nothing written; writable again, it issues.
    @Test(.migratedDatabase) func aServerThatTurnsReadOnlyIsA503() async throws {
        let name = String(try DatabaseURL(TestDatabase.url).database ?? "")
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            try await setReadOnly(name, true)
            // The pool has new (read-only) sessions once a read goes through again.
            var ready = false
            for _ in 0..<100 where !ready {
                ready = try await client.send(.get, "/readyz").status == .ok
                if !ready { try await Task.sleep(for: .milliseconds(50)) }
            }
            try #require(ready)
            let refused = try await client.issue(couponID, "on-a-standby")
            #expect(refused.status == .serviceUnavailable && refused.problemCode == "unavailable")
            #expect(refused.headers[.retryAfter] != nil)
            try await setReadOnly(name, false)
            // A retry is safe: the first that goes through is issued, any later one finds the ticket.
            var issued = false
            for _ in 0..<100 where !issued {
                let status = try await client.issue(couponID, "back-on-a-primary").status
                issued = status == .created || status == .ok
                if !issued { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(issued, "writable again, the instance issues")
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 1, "nothing was written while read-only")
        }
    }

    /// Every new session of the database read-only (or not), and the application's sessions ended so
    /// that its pool opens new ones.
    func setReadOnly(_ database: String, _ readOnly: Bool) async throws {
        try await withPostgresClient(databaseURL: TestDatabaseURL.server, logger: TestDatabase.logger) { server in
            try await server.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \"\(database)\" SET default_transaction_read_only = \(readOnly)"))
            try await server.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(database) AND application_name = 'coupon-server'")
        }
    }
}
