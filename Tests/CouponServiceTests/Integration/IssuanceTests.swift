import CouponService
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Issuance through the HTTP API against the real database, checked in the database.
@Suite struct IssuanceTests {
    /// The original design's own test: 1000 tickets, 1500 users at once.
    @Test func aBurstIssuesExactlyTheQuantity() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 1000)
        try await buildApplication(TestArguments()).test(.router) { client in
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

    @Test func theSameUserAtOnceGetsOneTicket() async throws {
        let couponID = try await TestDatabase.makeCoupon(quantity: 10)
        try await buildApplication(TestArguments()).test(.router) { client in
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
