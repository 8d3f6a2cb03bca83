import CouponService
import Foundation
import Logging
import PostgresNIO
import Testing

/// The issuance SQL itself, from many connections at once, with no HTTP in between.
@Suite struct IssuanceSQLTests {
    @Test func manyConnectionsIssueExactlyTheQuantity() async throws {
        _ = try await TestDatabase.ready()
        let couponID = try await TestDatabase.makeCoupon(quantity: 700)
        // Groups of users, some repeated within a group and across groups, from 32 connections.
        let outcomes = try await withPostgresClient(databaseURL: TestDatabase.url, logger: TestDatabase.logger) { client in
            let issuer = IssuanceStore(client: client, logger: TestDatabase.logger)
            return try await withThrowingTaskGroup(of: [String: IssueOutcome].self) { group in
                for worker in 0..<32 {
                    group.addTask {
                        var outcomes: [String: IssueOutcome] = [:]
                        for round in 0..<12 {
                            let users = (0..<4).map { "sql-\((worker * 48 + round * 4 + $0) % 1400)" } + ["sql-shared-\(round)"]
                            for (user, outcome) in try await issuer.issue(couponID: couponID, userIDs: users + [users[0]]) {
                                if case .issued = outcome { outcomes[user] = outcome }
                            }
                        }
                        return outcomes
                    }
                }
                var issued: [String: IssueOutcome] = [:]
                for try await outcomes in group {
                    for (user, outcome) in outcomes {
                        #expect(issued[user] == nil, "\(user) was issued twice")
                        issued[user] = outcome
                    }
                }
                return issued
            }
        }
        #expect(outcomes.count == 700)
        let audit = try await TestDatabase.audit(couponID: couponID)
        #expect(audit == .init(quantity: 700, issuedCount: 700, ticketRows: 700, ticketsHeld: 700, distinctUsers: 700))
        for (user, outcome) in outcomes {
            guard case .issued(let ticket) = outcome else { continue }
            #expect(try await TestDatabase.heldCode(couponID: couponID, userID: user) == ticket.code)
        }
    }

    @Test func aGroupAnswersEveryDistinctUserOnce() async throws {
        let client = try await TestDatabase.ready()
        let couponID = try await TestDatabase.makeCoupon(quantity: 2)
        let issuer = IssuanceStore(client: client, logger: TestDatabase.logger)
        let first = try await issuer.issue(couponID: couponID, userIDs: ["a", "b", "a", "c"])
        #expect(first.count == 3)
        #expect(first.values.filter { if case .issued = $0 { true } else { false } }.count == 2)
        #expect(first["c"] == .soldOut, "tickets go in arrival order")
        let second = try await issuer.issue(couponID: couponID, userIDs: ["b", "d"])
        #expect(second["b"].map { if case .held = $0 { true } else { false } } == true)
        #expect(second["d"] == .soldOut)
        #expect(try await issuer.issue(couponID: 9_000_000_000_000, userIDs: ["a"]) == ["a": .couponNotFound])
        #expect(try await TestDatabase.audit(couponID: couponID).isConsistent)
    }

    @Test func theCounterCannotPassTheQuantity() async throws {
        let client = try await TestDatabase.ready()
        let couponID = try await TestDatabase.makeCoupon(quantity: 1)
        await #expect(throws: PSQLError.self) {
            try await client.query("UPDATE coupons SET issued_count = 2 WHERE id = \(couponID)")
        }
    }
}
