@testable import CouponService
import CouponTestSupport
import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import NIOCore
import PostgresNIO
import Synchronization
import Testing

/// Events that leave the building: every change writes its event in its own transaction, the feed
/// never passes an event that commits later at an earlier position, and webhooks receive every event,
/// signed, in feed order, through failures (docs/events.md).
/// Serialized: the feed and the endpoints are the database's, which the suite's tests share.
@Suite(.migratedDatabase, .serialized) struct EventTests {
    struct Page: Decodable {
        struct Event: Decodable {
            var id: String
            var type: String
            var coupon_id: Int64
            var occurred_at: String
            var data: JSONValue
        }
        var events: [Event]
        var next: String
    }

    func page(_ client: some TestClientProtocol, _ query: String = "", bearer: String? = nil) async throws -> Page {
        let response = try await client.send(.get, "/v1/events\(query)", admin: bearer == nil, bearer: bearer)
        try #require(response.status == .ok, "\(String(buffer: response.body))")
        return try response.decode(Page.self)
    }

    /// Where the feed ends now.
    func cursorNow(_ client: some TestClientProtocol) async throws -> String {
        var next = try await page(client, "?limit=1000").next
        while true {
            let more = try await page(client, "?after=\(next)&limit=1000")
            if more.events.isEmpty { return next }
            next = more.next
        }
    }

    /// The endpoints' delivery state and the last events, for a failure's message.
    func deliveryState() async throws -> String {
        var lines: [String] = []
        for try await line in try await TestDatabase.client.query(
            """
            SELECT format('webhook %s: through %s.%s, holder %s until %s, attempts %s, failing since %s, gave up %s',
                          id, delivered_through, delivered_within, lease_holder, lease_until, attempts, failing_since, gave_up_at)
            FROM webhooks
            UNION ALL
            (SELECT format('event %s.%s: %s of coupon %s', position, within, type, coupon_id) FROM outbox_events
             ORDER BY position DESC, within DESC LIMIT 6)
            UNION ALL
            SELECT format('now %s, xids running %s', now(), (SELECT count(*) FROM pg_stat_activity
                                                           WHERE datname = current_database() AND backend_xid IS NOT NULL))
            """
        ).decode(String.self) { lines.append(line) }
        return lines.joined(separator: "\n")
    }

    /// The events of one coupon in the outbox, in feed order.
    func storedTypes(_ couponID: Int64) async throws -> [String] {
        var types: [String] = []
        for try await type in try await TestDatabase.client.query(
            "SELECT type FROM outbox_events WHERE coupon_id = \(couponID) ORDER BY position, within"
        ).decode(String.self) { types.append(type) }
        return types
    }

    @Test func everyChangeWritesOneEventAndARefusalNone() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 2)
            #expect(try await client.issue(couponID, "ann").status == .created)
            #expect(try await client.issue(couponID, "ann").status == .ok)  // already issued: nothing changed
            #expect(try await client.issue(couponID, "bob").status == .created)
            #expect(try await client.issue(couponID, "cat").status == .conflict)  // sold out
            let ticket = "/v1/coupons/\(couponID)/tickets/ann"
            #expect(try await client.send(.post, "\(ticket)/redemption", json: #"{"order_id":"o1","hold_seconds":60}"#).status == .created)
            #expect(try await client.send(.post, "\(ticket)/redemption", json: #"{"order_id":"o2"}"#).status == .conflict)
            #expect(try await client.send(.post, "\(ticket)/redemption", json: #"{"order_id":"o1"}"#).status == .ok)
            #expect(try await client.send(.delete, "\(ticket)/redemption?order_id=o1").status == .ok)
            #expect(try await client.send(.delete, ticket, admin: true).status == .noContent)
            #expect(try await client.send(.patch, "/v1/coupons/\(couponID)", json: #"{"quantity":3}"#, admin: true).status == .ok)
            #expect(
                try await storedTypes(couponID) == [
                    "coupon.created", "ticket.issued", "ticket.issued", "coupon.sold_out", "ticket.held", "ticket.redeemed",
                    "ticket.restored", "ticket.returned", "coupon.changed",
                ])
        }
    }

    @Test func aGrantIsIssuedAndALapseToldOnce() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 3)
            let granted = try await client.send(.post, "/v1/coupons/\(couponID)/grants", json: #"{"user_ids":["gil","gil"]}"#, admin: true)
            #expect(granted.status == .ok)
            let ticket = "/v1/coupons/\(couponID)/tickets/gil"
            #expect(try await client.send(.post, "\(ticket)/redemption", json: #"{"order_id":"o5","hold_seconds":60}"#).status == .created)
            try await TestDatabase.client.query(
                "UPDATE coupon_tickets SET hold_until = clock_timestamp() - interval '1 second' WHERE coupon_id = \(couponID) AND user_id = 'gil'")
            for _ in 0..<3 { #expect(try await client.send(.get, ticket).status == .ok) }
            #expect(try await storedTypes(couponID) == ["coupon.created", "ticket.issued", "ticket.held", "ticket.hold_lapsed"])
        }
    }

    @Test func anEventCarriesItsTicketAsTheRouteAnswersIt() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            let start = try await cursorNow(client)
            let issued = try await client.issue(couponID, "dan")
            let code = try issued.decode(TicketBody.self).ticket.code
            let held = try await client.send(.post, "/v1/tickets/\(code)/redemption", json: #"{"order_id":"o9","hold_seconds":60}"#)
            #expect(held.status == .created)
            let lookup = try await client.send(.get, "/v1/tickets/\(code)")
            let events = try await page(client, "?after=\(start)").events
            try #require(events.map(\.type) == ["ticket.issued", "ticket.held"])
            #expect(events.allSatisfy { $0.coupon_id == couponID })
            #expect(events[1].data == (try lookup.decode(JSONValue.self)))
            #expect(Set(events.map(\.id)).count == 2)
        }
    }

    /// The feed's guarantee: an event held uncommitted stops the feed at its position; later events
    /// wait behind it until it commits (both come, in position order) or rolls back (the gap is passed).
    @Test(arguments: [true, false]) func theFeedNeverPassesAnEventThatCommitsLater(commit: Bool) async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            #expect(try await client.issue(couponID, "early").status == .created)
            let before = try await cursorNow(client)
            try await TestDatabase.client.withConnection { held in
                for try await _ in try await held.query("BEGIN", logger: TestDatabase.logger) {}
                // Read to the end: the function has run, its event's position taken.
                for try await outcome in try await held.query(
                    "SELECT outcome FROM redeem_ticket(\(couponID), 'early', NULL, 'slow-order', 60)", logger: TestDatabase.logger
                ).decode(String.self) { #expect(outcome == "hold_placed") }
                // Committed after the held one took its position.
                #expect(try await client.issue(couponID, "late").status == .created)
                let stuck = try await page(client, "?after=\(before)")
                #expect(stuck.events.isEmpty && stuck.next == before, "the feed passed an uncommitted event")
                for try await _ in try await held.query(commit ? "COMMIT" : "ROLLBACK", logger: TestDatabase.logger) {}
            }
            let after = try await page(client, "?after=\(before)&wait=5")
            #expect(after.events.map(\.type) == (commit ? ["ticket.held", "ticket.issued"] : ["ticket.issued"]))
        }
    }

    @Test func aLongPollIsWokenByTheCommit() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            let before = try await cursorNow(client)
            let started = ContinuousClock.now
            async let waited = page(client, "?after=\(before)&wait=30")
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.issue(couponID, "eve").status == .created)
            let events = try await waited.events
            #expect(events.map(\.type) == ["ticket.issued"])
            // Woken, not timed out: the wait was 30 s.
            #expect(ContinuousClock.now - started < .seconds(29))
        }
    }

    /// Issues a group of tickets of a coupon in one call of issue_tickets, as the queue does: one
    /// outbox row of the group's ticket.issued events (migrations/0014).
    func issueGroup(_ couponID: Int64, _ users: [String]) async throws {
        for try await issued in try await TestDatabase.client.query(
            "SELECT count(*) FROM issue_tickets(\(couponID), \(users)) WHERE outcome = 'issued'"
        ).decode(Int.self) { try #require(issued == users.count) }
        for try await rows in try await TestDatabase.client.query(
            "SELECT count(*) FROM outbox WHERE coupon_id = \(couponID) AND type = 'ticket.issued'"
        ).decode(Int.self) { try #require(rows == 1, "a group's tickets in one row") }
    }

    /// A group's row is read as an event per ticket, in number order, each the ticket as its route
    /// answers it; a page may end inside the row (`next` "P.K") and the next page goes on from there;
    /// a cursor of the whole row ("P") passes all of it.
    @Test func aGroupsRowIsAnEventPerTicketAndAPageMayEndInsideIt() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 5)
            let start = try await cursorNow(client)
            let users = ["g1", "g2", "g3", "g4", "g5"]
            try await issueGroup(couponID, users)
            var events: [Page.Event] = []
            var cursors: [String] = []
            var next = start
            while true {
                let more = try await page(client, "?after=\(next)&limit=2")
                if more.events.isEmpty { break }
                events += more.events
                next = more.next
                cursors.append(next)
            }
            #expect(events.map(\.type) == Array(repeating: "ticket.issued", count: 5) + ["coupon.sold_out"])
            #expect(Set(events.map(\.id)).count == 6)
            // The ids the view gives a consumer of the table (a script, Debezium's reader) are the feed's.
            var stored: [String] = []
            for try await id in try await TestDatabase.client.query(
                "SELECT id FROM outbox_events WHERE coupon_id = \(couponID) AND type <> 'coupon.created' ORDER BY position, within"
            ).decode(UUID.self) { stored.append(id.uuidString.lowercased()) }
            #expect(events.map(\.id) == stored)
            let tickets = events.prefix(5).map { event -> (user: String?, number: Double?, code: String?) in
                guard case .object(let data) = event.data, case .string(let user) = data["user_id"],
                    case .object(let ticket) = data["ticket"], case .number(let number) = ticket["number"],
                    case .string(let code) = ticket["code"]
                else { return (nil, nil, nil) }
                return (user, number, code)
            }
            #expect(Set(tickets.compactMap(\.user)) == Set(users))
            #expect(tickets.compactMap(\.number) == tickets.compactMap(\.number).sorted() && tickets.compactMap(\.number).count == 5)
            let lookup = try await client.send(.get, "/v1/tickets/\(tickets[2].code ?? "")")
            #expect(events[2].data == (try lookup.decode(JSONValue.self)))
            // Pages of 2 end inside the row of 5, then after it.
            let row = try #require(cursors.first?.split(separator: ".").first)
            #expect(cursors.prefix(2) == ["\(row).2", "\(row).4"])
            #expect(!cursors[2].contains("."))
            #expect(try await page(client, "?after=\(row).4").events.map(\.type) == ["ticket.issued", "coupon.sold_out"])
            #expect(try await page(client, "?after=\(row)").events.map(\.type) == ["coupon.sold_out"])
        }
    }

    /// A webhook's batches of 2 over a group of 5: every event once acknowledged, in order, the
    /// endpoint's record inside the row between them; retention keeps a row an endpoint has only part of.
    @Test func aWebhookTakesAGroupsRowInBatchesAndRetentionKeepsAPartOfIt() async throws {
        var arguments = TestArguments()
        arguments.events.webhookBatch = 2
        try await WebhookReceiver.run { receiver in
            try await buildApplication(arguments).test(.router) { client in
                let registered = try await client.send(.post, "/v1/webhooks", json: #"{"url":"\#(receiver.url)"}"#, admin: true)
                try #require(registered.status == .created)
                struct Registered: Decodable { var id: Int64 }
                let webhookID = try registered.decode(Registered.self).id
                let couponID = try await client.createCoupon(quantity: 5)
                try await issueGroup(couponID, ["w1", "w2", "w3", "w4", "w5"])
                let wanted = try await storedTypes(couponID)
                let arrived = await waitUntil(.seconds(30)) {
                    receiver.deliveries.filter(\.acknowledged).flatMap(\.events).filter { $0.coupon_id == couponID }.count >= wanted.count
                }
                let state = arrived ? "" : try await deliveryState()
                #expect(arrived, "\(state)")
                let acknowledged = receiver.deliveries.filter(\.acknowledged).flatMap(\.events).filter { $0.coupon_id == couponID }
                #expect(acknowledged.map(\.type) == wanted)
                #expect(Set(acknowledged.map(\.id)).count == wanted.count)
                #expect(receiver.deliveries.contains { $0.deliveryID.contains(".") }, "no delivery ended inside the row")
                #expect(try await client.send(.delete, "/v1/webhooks/\(webhookID)", admin: true).status == .noContent)
                // Retention: an endpoint with the first 2 events of the row holds the row.
                var row: Int64 = 0
                let heldID = try await client.createCoupon(quantity: 4)
                try await issueGroup(heldID, ["r1", "r2", "r3"])
                for try await position in try await TestDatabase.client.query(
                    "SELECT position FROM outbox WHERE coupon_id = \(heldID) AND type = 'ticket.issued'").decode(Int64.self) { row = position }
                try await TestDatabase.client.query("UPDATE outbox SET occurred_at = occurred_at - interval '8 days' WHERE coupon_id = \(heldID)")
                let holding = try await TestDatabase.client.query(
                    "INSERT INTO webhooks (url, secret, delivered_through, delivered_within) VALUES ('http://127.0.0.1:9/', 's', \(row), 2) RETURNING id")
                var holderID: Int64 = 0
                for try await id in holding.decode(Int64.self) { holderID = id }
                let database = Database.running(TestDatabase.client)
                let outbox = Outbox(database: database)
                let feed = EventFeed(database: database, metrics: CouponMetrics())
                _ = try await outbox.deleteDelivered(olderThan: .seconds(7 * 24 * 3600), settled: try await feed.advance())
                #expect(try await storedTypes(heldID) == ["ticket.issued", "ticket.issued", "ticket.issued"])
                try await TestDatabase.client.query("UPDATE webhooks SET delivered_within = NULL WHERE id = \(holderID)")
                _ = try await outbox.deleteDelivered(olderThan: .seconds(7 * 24 * 3600), settled: try await feed.advance())
                #expect(try await storedTypes(heldID).isEmpty)
                try await TestDatabase.client.query("DELETE FROM webhooks WHERE id = \(holderID)")
            }
        }
    }

    @Test func theFeedTakesTheReaderTokenAndRefusesStrangers() async throws {
        var arguments = TestArguments()
        arguments.eventsToken = .given("test-events-reader-token-of-32-bytes")
        try await buildApplication(arguments).test(.router) { client in
            _ = try await page(client, bearer: "test-events-reader-token-of-32-bytes")
            #expect(try await client.send(.get, "/v1/events").status == .unauthorized)
            #expect(try await client.send(.get, "/v1/events", bearer: "not-the-reader-token-but-32-bytes-long").status == .unauthorized)
            // The reader reads; it registers no webhook.
            let register = try await client.send(
                .post, "/v1/webhooks", json: #"{"url":"http://127.0.0.1:9/"}"#, bearer: "test-events-reader-token-of-32-bytes")
            #expect(register.status == .unauthorized)
            for query in ["?after=x", "?after=-1", "?after=1&after=2", "?limit=0", "?limit=1001", "?wait=31", "?wait=1.5"] {
                let response = try await client.send(.get, "/v1/events\(query)", admin: true)
                #expect(response.status == .badRequest && response.problemCode == "invalid_request", "\(query)")
            }
        }
    }

    @Test func aWebhookIsRefusedWhatItCannotBeAndNothingIsStored() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let bodies = [
                #"{"url":"ftp://127.0.0.1/x"}"#, #"{"url":"http://user:secret@127.0.0.1/x"}"#, #"{"url":"127.0.0.1/x"}"#,
                #"{"url":"http://127.0.0.1/x#part"}"#, #"{"url":"http:///x"}"#,
                #"{"url":"http://127.0.0.1/x","types":["ticket.sold"]}"#, #"{"url":"http://127.0.0.1/x","types":[]}"#,
                #"{"url":"http://127.0.0.1/x","types":["ticket.issued","ticket.issued"]}"#, #"{"types":["ticket.issued"]}"#,
                #"{"url":"http://127.0.0.1/x","url":"http://127.0.0.1/y"}"#, "[]",
            ]
            for body in bodies {
                let response = try await client.send(.post, "/v1/webhooks", json: body, admin: true)
                #expect(response.status == .badRequest, "\(body)")
            }
            #expect(try await client.send(.post, "/v1/webhooks", json: #"{"url":"http://127.0.0.1/x"}"#).status == .unauthorized)
            #expect(try await client.send(.delete, "/v1/webhooks/abc", admin: true).status == .notFound)
            #expect(try await client.send(.delete, "/v1/webhooks/999999", admin: true).status == .notFound)
            let stored = try await TestDatabase.client.query("SELECT count(*) FROM webhooks WHERE url LIKE '%127.0.0.1%x%'")
            for try await count in stored.decode(Int.self) { #expect(count == 0) }
        }
    }

    @Test func aWebhookReceivesEveryEventSignedInOrderThroughFailures() async throws {
        try await WebhookReceiver.run(failFirst: 2) { receiver in
            try await buildApplication(TestArguments()).test(.router) { client in
                let registered = try await client.send(
                    .post, "/v1/webhooks", json: #"{"url":"\#(receiver.url)"}"#, admin: true)
                try #require(registered.status == .created)
                struct Registered: Decodable { var id: Int64; var secret: String }
                let webhook = try registered.decode(Registered.self)
                let couponID = try await client.createCoupon(quantity: 20)
                for user in 0..<20 { #expect(try await client.issue(couponID, "u\(user)").status == .created) }
                let wanted = try await storedTypes(couponID).count
                #expect(wanted == 22)  // created, 20 issued, sold out
                let arrived = await waitUntil(.seconds(30)) {
                    receiver.deliveries.filter(\.acknowledged).flatMap(\.events).filter { $0.coupon_id == couponID }.count >= wanted
                }
                #expect(arrived)
                let deliveries = receiver.deliveries
                #expect(receiver.refused == 2)
                for delivery in deliveries {
                    #expect(delivery.signatureHolds(secret: webhook.secret), "\(delivery.signature)")
                    #expect(delivery.deliveryID.hasPrefix("\(webhook.id)-"))
                }
                // In feed order, every event at least once (the refused batches again, once acknowledged).
                let acknowledged = deliveries.filter(\.acknowledged).flatMap(\.events).filter { $0.coupon_id == couponID }
                #expect(acknowledged.map(\.type) == (try await storedTypes(couponID)))
                struct Listing: Decodable {
                    struct Item: Decodable { var id: Int64; var pending: Int; var last_delivered_at: String?; var failing_since: String? }
                    var webhooks: [Item]
                }
                // The instance records an acknowledgement after the receiver has answered it: a moment later.
                var item: Listing.Item?
                let settled = try await waitUntil(.seconds(10)) {
                    let listed = try await client.send(.get, "/v1/webhooks", admin: true)
                    #expect(!String(buffer: listed.body).contains(webhook.secret))
                    item = try listed.decode(Listing.self).webhooks.first { $0.id == webhook.id }
                    return item?.pending == 0
                }
                #expect(settled && item?.last_delivered_at != nil && item?.failing_since == nil, "\(String(describing: item))")
                #expect(try await client.send(.delete, "/v1/webhooks/\(webhook.id)", admin: true).status == .noContent)
                #expect(try await client.send(.delete, "/v1/webhooks/\(webhook.id)", admin: true).status == .notFound)
            }
        }
    }

    @Test func aWebhookOfSomeTypesGetsThoseAlone() async throws {
        try await WebhookReceiver.run { receiver in
            try await buildApplication(TestArguments()).test(.router) { client in
                let registered = try await client.send(
                    .post, "/v1/webhooks", json: #"{"url":"\#(receiver.url)","types":["coupon.sold_out"]}"#, admin: true)
                try #require(registered.status == .created)
                let couponID = try await client.createCoupon(quantity: 2)
                for user in ["a", "b", "c"] { _ = try await client.issue(couponID, user) }
                let delivered = await waitUntil(.seconds(30)) { receiver.deliveries.flatMap(\.events).contains { $0.coupon_id == couponID } }
                let state = delivered ? "" : try await deliveryState()
                #expect(delivered, "\(state)")
                #expect(receiver.deliveries.flatMap(\.events).filter { $0.coupon_id == couponID }.map(\.type) == ["coupon.sold_out"])
                struct Registered: Decodable { var id: Int64 }
                let id = try registered.decode(Registered.self).id
                #expect(try await client.send(.delete, "/v1/webhooks/\(id)", admin: true).status == .noContent)
            }
        }
    }

    /// An instance whose endpoint's record moved on under its delivery (another instance delivered the
    /// batch while this one's lease had lapsed, then the lease came back) goes on delivering: the task
    /// that found its acknowledgement refused ends, and the lease loop starts another from the record.
    @Test func aDeliveryOvertakenUnderItsLeaseGoesOn() async throws {
        final class Once: Sendable { let done = Mutex(false) }
        let overtaken = Once()
        try await WebhookReceiver.run(beforeAnswer: { delivery in
            guard overtaken.done.withLock({ done in defer { done = true }; return !done }) else { return }
            // `Coupon-Delivery: <webhook>-<first cursor>-<last cursor>`: this batch recorded as delivered.
            let parts = delivery.deliveryID.split(separator: "-")
            try #require(parts.count == 3)
            let (id, last) = (try #require(Int64(parts[0])), try #require(EventCursor(parts[2])))
            try await TestDatabase.client.query(
                "UPDATE webhooks SET delivered_through = \(last.position), delivered_within = \(last.within) WHERE id = \(id)")
        }) { receiver in
            try await buildApplication(TestArguments()).test(.router) { client in
                let registered = try await client.send(.post, "/v1/webhooks", json: #"{"url":"\#(receiver.url)"}"#, admin: true)
                try #require(registered.status == .created)
                let couponID = try await client.createCoupon(quantity: 2)
                #expect(await waitUntil(.seconds(10)) { overtaken.done.withLock { $0 } })
                _ = try await client.issue(couponID, "ona")
                let delivered = await waitUntil(.seconds(15)) {
                    receiver.deliveries.flatMap(\.events).contains { $0.coupon_id == couponID && $0.type == "ticket.issued" }
                }
                let state = delivered ? "" : try await deliveryState()
                #expect(delivered, "\(state)")
                struct Registered: Decodable { var id: Int64 }
                let id = try registered.decode(Registered.self).id
                #expect(try await client.send(.delete, "/v1/webhooks/\(id)", admin: true).status == .noContent)
            }
        }
    }

    @Test func anOrdersTicketsAreListedForTheCheckoutAlone() async throws {
        var arguments = TestArguments()
        arguments.checkoutToken = .given(TestArguments.checkoutToken)
        try await buildApplication(arguments).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 3)
            for user in ["fay", "gus"] { #expect(try await client.issue(couponID, user).status == .created) }
            for user in ["fay", "gus"] {
                let held = try await client.send(
                    .post, "/v1/coupons/\(couponID)/tickets/\(user)/redemption", json: #"{"order_id":"order-7","hold_seconds":60}"#)
                #expect(held.status == .created)
            }
            struct Listing: Decodable {
                struct Item: Decodable { var user_id: String; var state: String; var order_id: String? }
                var tickets: [Item]
            }
            let listed = try await client.send(.get, "/v1/orders/order-7/tickets", bearer: TestArguments.checkoutToken)
            #expect(try listed.decode(Listing.self).tickets.map(\.user_id).sorted() == ["fay", "gus"])
            #expect(try await client.send(.get, "/v1/orders/order-7/tickets", admin: true).status == .ok)
            #expect(try await client.send(.get, "/v1/orders/order-7/tickets").status == .unauthorized)
            let none = try await client.send(.get, "/v1/orders/order-8/tickets", admin: true)
            #expect(try none.decode(Listing.self).tickets.isEmpty)
            #expect(try await client.send(.get, "/v1/orders/bad%20id/tickets", admin: true).status == .badRequest)
        }
    }

    @Test func deliveredEventsPastTheirRetentionAreDeletedAndNoOthers() async throws {
        try await buildApplication(TestArguments()).test(.router) { client in
            let couponID = try await client.createCoupon(quantity: 3)
            for user in ["h1", "h2"] { #expect(try await client.issue(couponID, user).status == .created) }
            try await TestDatabase.client.query("UPDATE outbox SET occurred_at = occurred_at - interval '8 days' WHERE coupon_id = \(couponID)")
            let database = Database.running(TestDatabase.client)
            let outbox = Outbox(database: database)
            let feed = EventFeed(database: database, metrics: CouponMetrics())
            // An endpoint that has none of them holds them all.
            let holding = try await TestDatabase.client.query(
                "INSERT INTO webhooks (url, secret, delivered_through) VALUES ('http://127.0.0.1:9/', 's', 0) RETURNING id")
            var webhookID: Int64 = 0
            for try await id in holding.decode(Int64.self) { webhookID = id }
            #expect(try await outbox.deleteDelivered(olderThan: .seconds(7 * 24 * 3600), settled: try await feed.advance()) == 0)
            // Given up, it holds nothing.
            try await TestDatabase.client.query("UPDATE webhooks SET gave_up_at = now() WHERE id = \(webhookID)")
            #expect(try await outbox.deleteDelivered(olderThan: .seconds(7 * 24 * 3600), settled: try await feed.advance(), batch: 2) >= 3)
            #expect(try await storedTypes(couponID).isEmpty)
            try await TestDatabase.client.query("DELETE FROM webhooks WHERE id = \(webhookID)")
        }
    }
}

/// An HTTP server the tests start on loopback to receive webhook deliveries: it records each one and
/// refuses (500) the first `failFirst`.
final class WebhookReceiver: Sendable {
    struct Delivery: Sendable {
        var body: Data
        var signature: String
        var deliveryID: String
        var acknowledged: Bool

        struct Body: Decodable { var events: [EventTests.Page.Event] }
        var events: [EventTests.Page.Event] { (try? JSONDecoder().decode(Body.self, from: body).events) ?? [] }

        /// `t=<seconds>,v1=<hex HMAC-SHA256 of "t.body">`, as a consumer checks it.
        func signatureHolds(secret: String) -> Bool {
            let parts = Dictionary(signature.split(separator: ",").map { part in
                let pair = part.split(separator: "=", maxSplits: 1)
                return (String(pair[0]), pair.count > 1 ? String(pair[1]) : "")
            }, uniquingKeysWith: { first, _ in first })
            guard let timestamp = parts["t"], let given = parts["v1"] else { return false }
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(timestamp).".utf8) + body, using: SymmetricKey(data: Data(secret.utf8)))
            return given == mac.map { String(format: "%02x", $0) }.joined()
        }
    }

    private let state = Mutex<(deliveries: [Delivery], refused: Int)>(([], 0))
    let failFirst: Int
    let port: Int

    init(failFirst: Int, port: Int) {
        self.failFirst = failFirst
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)/hooks" }
    var deliveries: [Delivery] { state.withLock { $0.deliveries } }
    var refused: Int { state.withLock { $0.refused } }

    /// Records a delivery, acknowledged unless it is one of the first `failFirst`.
    func receive(_ delivery: Delivery) -> Bool {
        state.withLock { state in
            var delivery = delivery
            delivery.acknowledged = state.refused >= failFirst
            if !delivery.acknowledged { state.refused += 1 }
            state.deliveries.append(delivery)
            return delivery.acknowledged
        }
    }

    /// Runs `body` with a receiver listening, and stops it after; `beforeAnswer` runs on each delivery
    /// before it is answered.
    static func run(
        failFirst: Int = 0, beforeAnswer: @escaping @Sendable (Delivery) async throws -> Void = { _ in },
        _ body: (WebhookReceiver) async throws -> Void
    ) async throws {
        let receiverBox = Mutex<WebhookReceiver?>(nil)
        let router = Router()
        router.post("/hooks") { request, _ -> HTTPResponse.Status in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            guard let receiver = receiverBox.withLock({ $0 }) else { return .serviceUnavailable }
            let delivery = Delivery(
                body: Data(bytes.readableBytesView), signature: request.headers[HTTPField.Name("Coupon-Signature")!] ?? "",
                deliveryID: request.headers[HTTPField.Name("Coupon-Delivery")!] ?? "", acknowledged: false)
            try await beforeAnswer(delivery)
            return receiver.receive(delivery) ? .noContent : .internalServerError
        }
        try await withLoopbackServer(router) { port in
            let receiver = WebhookReceiver(failFirst: failFirst, port: port)
            receiverBox.withLock { $0 = receiver }
            try await body(receiver)
        }
    }
}

/// Any JSON, compared as a value (key order and spacing aside).
indirect enum JSONValue: Decodable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}
