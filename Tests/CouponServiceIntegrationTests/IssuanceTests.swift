@testable import CouponService
import CouponTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// Issuance through the HTTP API against the real database, checked in the database.
@Suite(.migratedDatabase) struct IssuanceTests {
    /// No 201 leaves before COMMIT: a deferred constraint trigger makes the issuing transaction's
    /// COMMIT wait on an advisory lock this test holds. While it waits, the ticket is not visible and
    /// no answer has arrived; once the lock goes, the 201 comes with the committed ticket.
    @Test(.migratedDatabase) func noAnswerLeavesBeforeCommit() async throws {
        final class Arrival: Sendable { let answered = Mutex(false) }
        let arrival = Arrival()
        let couponID = try await TestDatabase.makeCoupon(quantity: 1)
        try await TestDatabase.client.query(
            """
            CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$
            """)
        try await TestDatabase.client.query(
            """
            CREATE CONSTRAINT TRIGGER hold_commit AFTER UPDATE ON coupon_tickets
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()
            """)
        @Sendable func held() async throws -> Bool { try await TestDatabase.heldCode(couponID: couponID, userID: "ann") != nil }
        try await buildApplication(TestArguments(databaseURL: TestDatabase.url)).test(.router) { client in
            try await TestDatabase.client.withConnection { lock in
                try await lock.query("SELECT pg_advisory_lock(4242)", logger: TestDatabase.logger)
                let answer = try await withThrowingTaskGroup(of: TestResponse?.self) { group in
                    group.addTask {
                        let answer = try await client.issue(couponID, "ann")
                        arrival.answered.withLock { $0 = true }
                        return answer
                    }
                    // The issuing transaction is at its COMMIT, waiting for the lock.
                    var waiting = false
                    for _ in 0..<1000 where !waiting {
                        let rows = try await lock.query(
                            """
                            SELECT count(*)::int FROM pg_locks
                            WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted
                            """, logger: TestDatabase.logger)
                        for try await count in rows.decode(Int.self) { waiting = count > 0 }
                        if !waiting { try await Task.sleep(for: .milliseconds(5)) }
                    }
                    try #require(waiting, "the issuing transaction never reached its COMMIT")
                    // Whatever the service would send before COMMIT has had every chance to arrive.
                    for _ in 0..<20 {
                        #expect(!arrival.answered.withLock { $0 }, "an answer arrived before COMMIT")
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    #expect(try await held() == false, "not committed yet")
                    try await lock.query("SELECT pg_advisory_unlock(4242)", logger: TestDatabase.logger)
                    return try await group.next() ?? nil
                }
                #expect(answer?.status == .created)
            }
            #expect(try await held(), "the answered ticket is committed")
            let audit = try await TestDatabase.audit(couponID: couponID)
            #expect(audit.isConsistent && audit.ticketsHeld == 1, "\(audit)")
        }
    }

    /// The original design's own test: 1000 tickets, 1500 users at once; grouped and one by one.
    @Test(.heavy, arguments: [512, 1])
    func aBurstIssuesExactlyTheQuantity(groupSize: Int) async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 1000)
        // One transaction per request is slow on a busy machine (the other suites run alongside):
        // a deadline this long is a bound against hanging, not a claim about speed.
        let arguments = TestArguments(databaseTimeout: .seconds(120), groupSize: groupSize)
        try await buildApplication(arguments).test(.router) { client in
            let answers = try await withThrowingTaskGroup(of: (String, TestResponse).self) { group in
                for user in 0..<1500 {
                    group.addTask {
                        let userID = "burst-\(user)"
                        return (userID, try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"\#(userID)"}"#))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let issued = answers.filter { $0.1.status == .created }
            let soldOut = answers.filter { $0.1.status == .conflict && $0.1.problemCode == "sold_out" }
            #expect(issued.count == 1000)
            #expect(soldOut.count == 500)

            let audit = try await TestDatabase.audit(couponID: couponID)
            #expect(audit == .init(quantity: 1000, issuedCount: 1000, ticketRows: 1000, ticketsHeld: 1000, distinctUsers: 1000))
            // Every user told 201 holds exactly the ticket they were shown.
            for (userID, response) in issued {
                let body = try response.decode(TicketBody.self)
                #expect(try await TestDatabase.heldCode(couponID: couponID, userID: userID) == body.ticket.code)
            }
            for (userID, _) in soldOut {
                #expect(try await TestDatabase.heldCode(couponID: couponID, userID: userID) == nil)
            }

            let coupon = try await client.send(.get, "/v1/coupons/\(couponID)")
            struct Summary: Decodable, Equatable { var issued: Int; var remaining: Int; var status: String }
            #expect(try coupon.decode(Summary.self) == Summary(issued: 1000, remaining: 0, status: "sold_out"))
        }
    }

    @Test(arguments: [512, 1])
    func theSameUserAtOnceGetsOneTicket(groupSize: Int) async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 10)
        // A 60 s deadline: with groups of 1, beside every other suite in CI, 7 of the 50 once waited
        // past the usual 10 s (503). The deadline is not what this test is about.
        try await buildApplication(TestArguments(databaseTimeout: .seconds(60), groupSize: groupSize)).test(.router) { client in
            let answers = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<50 {
                    group.addTask { try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"same-user"}"#) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.filter { $0.status == .created }.count == 1)
            #expect(answers.filter { $0.status == .ok }.count == 49)
            let bodies = try answers.map { try $0.decode(TicketBody.self) }
            #expect(Set(bodies).count == 1, "every answer carries the same ticket, code and time")
            #expect(try await TestDatabase.heldCode(couponID: couponID, userID: "same-user") == bodies.first?.ticket.code)
            #expect(try await TestDatabase.audit(couponID: couponID).ticketsHeld == 1)
            #expect(try await TestDatabase.audit(couponID: couponID).issuedCount == 1)
        }
    }

    /// Issue 4's burst: 10,000 requests at once for 5,000 tickets, every one answered, none an error.
    @Test(.heavy) func tenThousandAtOnceForFiveThousand() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 5000)
        // The burst takes 8 to 16 s in a debug build beside every other suite; at the tests' usual
        // 10 s deadline its last requests were once answered 503 (1,296 of them). The deadline is
        // not what this test is about: the release build's answer times are in bench/.
        try await buildApplication(TestArguments(databaseTimeout: .seconds(60))).test(.router) { client in
            let statuses = try await withThrowingTaskGroup(of: (HTTPResponse.Status, String?).self) { group in
                for user in 0..<10_000 {
                    group.addTask {
                        let response = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"ten-\#(user)"}"#)
                        return (response.status, response.problemCode)
                    }
                }
                return try await group.reduce(into: [:]) { $0["\($1.0.code) \($1.1 ?? "")", default: 0] += 1 }
            }
            #expect(statuses == ["201 ": 5000, "409 sold_out": 5000])
        }
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 5000, issuedCount: 5000, ticketRows: 5000, ticketsHeld: 5000, distinctUsers: 5000))
    }

    /// Two instances on one coupon, every user sent to both at once: still exact, one ticket each,
    /// and each instance answers a winner with the same code.
    @Test(.heavy) func twoInstancesStayExact() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 600)
        try await buildApplication(TestArguments()).test(.router) { a in
            try await buildApplication(TestArguments()).test(.router) { b in
                let answers = try await withThrowingTaskGroup(of: (String, TestResponse).self) { group in
                    for user in 0..<1000 {
                        for instance in [a, b] as [any TestClientProtocol] {
                            group.addTask {
                                let userID = "both-\(user)"
                                return (userID, try await instance.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"\#(userID)"}"#))
                            }
                        }
                    }
                    return try await group.reduce(into: [String: [TestResponse]]()) { $0[$1.0, default: []].append($1.1) }
                }
                var winners = 0
                for (userID, responses) in answers {
                    let codes = Set(responses.compactMap { try? $0.decode(TicketBody.self).ticket.code })
                    let statuses = responses.map(\.status.code).sorted()
                    if codes.isEmpty {
                        #expect(statuses == [409, 409])
                    } else {
                        winners += 1
                        #expect(codes.count == 1, "\(userID) saw two codes")
                        #expect(statuses == [200, 201], "\(userID): \(statuses)")
                        #expect(try await TestDatabase.heldCode(couponID: couponID, userID: userID) == codes.first)
                    }
                }
                #expect(winners == 600)
            }
        }
        #expect(try await TestDatabase.audit(couponID: couponID) == .init(
            quantity: 600, issuedCount: 600, ticketRows: 600, ticketsHeld: 600, distinctUsers: 600))
    }

    @Test func aRetryAfterSellOutStillGetsTheTicket() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 1)
        try await buildApplication(TestArguments()).test(.router) { client in
            let first = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"winner"}"#)
            #expect(first.status == .created)
            let loser = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"late"}"#)
            #expect(loser.status == .conflict)
            #expect(loser.problemCode == "sold_out")
            let retry = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"winner"}"#)
            #expect(retry.status == .ok)
            #expect(try retry.decode(TicketBody.self) == first.decode(TicketBody.self))
            let lookup = try await client.send(.get, "/v1/coupons/\(couponID)/tickets/winner")
            #expect(lookup.status == .ok)
            #expect(try lookup.decode(TicketBody.self) == first.decode(TicketBody.self))
            #expect(try await client.send(.get, "/v1/coupons/\(couponID)/tickets/late").problemCode == "ticket_not_found")
        }
        #expect(try await TestDatabase.audit(couponID: couponID).isConsistent)
    }

    /// A path parameter is percent-decoded: "ann%3Ab" asks for the user "ann:b" (found by schemathesis).
    @Test func aTicketIsFoundByAnEncodedUserID() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 1)
        try await buildApplication(TestArguments()).test(.router) { client in
            let issued = try await client.send(.post, "/v1/coupons/\(couponID)/issue", json: #"{"user_id":"ann:b@x"}"#)
            #expect(issued.status == .created)
            let lookup = try await client.send(.get, "/v1/coupons/\(couponID)/tickets/ann%3Ab%40x")
            #expect(lookup.status == .ok)
            #expect(try lookup.decode(TicketBody.self) == issued.decode(TicketBody.self))
            #expect(try await client.send(.get, "/v1/coupons/\(couponID)/tickets/ann%3").problemCode == "invalid_request")
        }
        #expect(try await TestDatabase.audit(couponID: couponID).isConsistent)
    }

    @Test func theSaleWindowIsEnforced() async throws {
        let future = try await TestDatabase.makeCoupon(quantity: 5, startsAt: Date().addingTimeInterval(3600))
        let past = try await TestDatabase.makeCoupon(
            quantity: 5, startsAt: Date().addingTimeInterval(-7200), endsAt: Date().addingTimeInterval(-3600))
        try await buildApplication(TestArguments()).test(.router) { client in
            let early = try await client.send(.post, "/v1/coupons/\(future)/issue", json: #"{"user_id":"u1"}"#)
            #expect(early.status == .conflict)
            #expect(early.problemCode == "not_started")
            let late = try await client.send(.post, "/v1/coupons/\(past)/issue", json: #"{"user_id":"u1"}"#)
            #expect(late.problemCode == "ended")
            struct Summary: Decodable { var status: String }
            #expect(try await client.send(.get, "/v1/coupons/\(future)").decode(Summary.self).status == "scheduled")
            #expect(try await client.send(.get, "/v1/coupons/\(past)").decode(Summary.self).status == "ended")
        }
        #expect(try await TestDatabase.audit(couponID: future).ticketsHeld == 0)
        #expect(try await TestDatabase.audit(couponID: past).ticketsHeld == 0)
    }
}
