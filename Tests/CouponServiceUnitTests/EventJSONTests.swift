@testable import CouponService
import CouponTestSupport
import Foundation
import NIOCore
import Testing

/// The hand-written events' body is byte for byte what `JSONEncoder.coupon` writes of the routes' own
/// answers (`TicketRecordResponse`, `CouponResponse`) in the event's envelope.
@Suite struct EventJSONTests {
    /// The envelope as the encoder writes it: the reference the hand-written body must match.
    struct Encoded: Encodable {
        struct Event: Encodable {
            var event: CouponEvent

            enum CodingKeys: String, CodingKey { case id, type, coupon_id, occurred_at, data }

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(event.id.uuidString.lowercased(), forKey: .id)
                try container.encode(event.type.rawValue, forKey: .type)
                try container.encode(event.couponID, forKey: .coupon_id)
                try container.encode(RFC3339.string(event.occurredAt), forKey: .occurred_at)
                switch event.subject {
                case .ticket(let record): try container.encode(TicketRecordResponse(record), forKey: .data)
                case .coupon(let coupon): try container.encode(CouponResponse(coupon: coupon, now: event.occurredAt), forKey: .data)
                }
            }
        }

        var events: [Event]
        var next: String?
    }

    static let at = Date(timeIntervalSince1970: 1_795_737_600.349)

    static func ticket(_ type: EventType, user: String, redemption: Redemption? = nil, hold: OrderHold? = nil) -> CouponEvent {
        let ticket = IssuedTicket(couponID: 9_007_199_254_740_993, userID: user, number: 1_000_000, code: "9-0123456789abcdef", issuedAt: at)
        return CouponEvent(
            cursor: EventCursor(position: 7, within: 2), id: UUID(), type: type, couponID: ticket.couponID, occurredAt: at,
            subject: .ticket(TicketRecord(ticket: ticket, redemption: redemption, hold: hold)))
    }

    static let events: [CouponEvent] = [
        ticket(.ticketIssued, user: "alice"),
        ticket(.ticketHeld, user: "a.b_c:d@e-f", hold: OrderHold(orderID: "order \"7\"\n", until: at.addingTimeInterval(600))),
        ticket(.ticketRedeemed, user: "quote\"back\\slash\u{01}é", redemption: Redemption(orderID: "order-8", redeemedAt: Date(timeIntervalSince1970: 0))),
        CouponEvent(
            cursor: EventCursor(position: 8), id: UUID(), type: .couponChanged, couponID: 3, occurredAt: at,
            subject: .coupon(Coupon(
                id: 3, name: "Black \"Friday\"", quantity: 10, issued: 10, startsAt: at.addingTimeInterval(-60), endsAt: nil,
                redeemUntil: Date(timeIntervalSince1970: 253_402_300_799.999), createdAt: at))),
    ]

    @Test(arguments: [(events, EventCursor?(EventCursor(position: 8))), (events, nil), ([], EventCursor?(EventCursor(position: 7, within: 40)))])
    func matchesTheEncoder(events: [CouponEvent], next: EventCursor?) throws {
        let expected = try JSONEncoder.coupon.encode(Encoded(events: events.map(Encoded.Event.init), next: next.map(\.description)))
        let written = try EventBatchJSON(events: events, next: next).body()
        #expect(String(buffer: written) == String(decoding: expected, as: UTF8.self))
    }
}
