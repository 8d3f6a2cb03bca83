// The events of the outbox (migrations/0012_outbox.sql), as the feed and the webhooks send them.
import Foundation
import Hummingbird
import NIOCore
import PostgresNIO

/// Every type of event, as the SQL that writes it names it (migrations/functions/outbox.sql and the
/// ticket functions). `EventTypeTests` holds the names against the SQL files and openapi.yaml.
enum EventType: String, Sendable, CaseIterable, Codable {
    case ticketIssued = "ticket.issued"
    case ticketHeld = "ticket.held"
    case ticketRedeemed = "ticket.redeemed"
    case ticketRestored = "ticket.restored"
    case ticketReturned = "ticket.returned"
    case ticketHoldLapsed = "ticket.hold_lapsed"
    case couponCreated = "coupon.created"
    case couponChanged = "coupon.changed"
    case couponSoldOut = "coupon.sold_out"
}

/// One committed change: what happened to which ticket or coupon, when on the database's clock, and
/// where it stands in the feed.
struct CouponEvent: Sendable, Equatable {
    /// Its place in the feed (the cursor a consumer continues from).
    var cursor: EventCursor
    /// What a consumer deduplicates on.
    var id: UUID
    var type: EventType
    var couponID: Int64
    var occurredAt: Date
    var subject: Subject

    /// What the event is about, as the routes answer it: a ticket (`GET /v1/tickets/{code}`; for
    /// `ticket.returned` as it was before the return) or a coupon (`GET /v1/coupons/{id}`).
    enum Subject: Sendable, Equatable {
        case ticket(TicketRecord)
        case coupon(Coupon)
    }

    /// The columns of `outbox_events` every read selects, in the order `decode` reads them: the
    /// event's, then a ticket's as `TicketRecord.decode` reads them, then a coupon's as
    /// `CouponStore.coupon` does.
    static let columns = """
        position, within, row_events, id, type, occurred_at, \
        coupon_id, user_id, number, code, issued_at, redeemed_at, order_id, hold_until, false, \
        coupon_id, name, quantity, issued_count, starts_at, ends_at, redeem_until, created_at
        """

    static func decode(_ row: PostgresRow) throws -> CouponEvent {
        let columns = row.makeRandomAccess()
        let name = try columns[4].decode(String.self)
        guard let type = EventType(rawValue: name) else { throw CouponEventError.unknownType(name) }
        let subject: Subject
        if let record = try TicketRecord.decode(columns, from: 6).record {
            subject = .ticket(record)
        } else {
            subject = .coupon(try CouponStore.coupon(columns, from: 15))
        }
        let (position, within, rowEvents) = (try columns[0].decode(Int64.self), try columns[1].decode(Int.self), try columns[2].decode(Int.self))
        return CouponEvent(
            cursor: EventCursor(position: position, within: within < rowEvents ? within : nil),
            id: try columns[3].decode(UUID.self), type: type, couponID: try columns[6].decode(Int64.self),
            occurredAt: try columns[5].decode(Date.self), subject: subject)
    }
}

/// A place in the feed: after the row at `position` (every event up to it), or after the first
/// `within` events of that row (a group's ticket.issued row, migrations/0014, holds one event per
/// ticket, and a page or a delivery may end inside it). As text, `next` and `after`: "P" or "P.K".
struct EventCursor: Sendable, Hashable, Comparable, CustomStringConvertible {
    var position: Int64
    /// Events of the row at `position` already passed; nil: all of them.
    var within: Int?

    init(position: Int64, within: Int? = nil) {
        self.position = position
        self.within = within
    }

    /// "P" or "P.K" with K at least 1; nil for anything else.
    init?(_ text: Substring) {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let position = String(parts[0]).plainInteger(maxDigits: 18) else { return nil }
        guard parts.count == 2 else {
            self.init(position: position)
            return
        }
        guard let within = String(parts[1]).plainInteger(maxDigits: 9), within >= 1 else { return nil }
        self.init(position: position, within: Int(within))
    }

    var description: String { within.map { "\(position).\($0)" } ?? String(position) }

    static func < (lhs: EventCursor, rhs: EventCursor) -> Bool {
        (lhs.position, lhs.within ?? .max) < (rhs.position, rhs.within ?? .max)
    }
}

enum CouponEventError: Error {
    case unknownType(String)
}

/// The body of a feed page and of a webhook delivery: `{"events": [...], "next"?}`, each event
/// `{"coupon_id", "data", "id", "occurred_at", "type"}` with `data` the ticket or the coupon as their
/// routes answer them (a coupon's status as of the event).
///
/// Written by hand, in the sorted key order `JSONEncoder.coupon` would use, because a sale's every
/// ticket passes through it once per endpoint (the encoder was most of a delivery's CPU);
/// `EventJSONTests` holds it to the encoder's bytes of the routes' own `TicketRecordResponse` and
/// `CouponResponse`.
struct EventBatchJSON: ResponseGenerator {
    var events: [CouponEvent]
    var next: EventCursor?

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: .ok, headers: Self.headers, body: .init(byteBuffer: try body()))
    }

    private static let headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]

    func body() throws -> ByteBuffer {
        var body = ByteBuffer()
        body.reserveCapacity(32 + events.count * 320)
        body.writeStaticString(#"{"events":["#)
        for (index, event) in events.enumerated() {
            if index > 0 { body.writeStaticString(",") }
            body.writeStaticString(#"{"coupon_id":"#)
            body.writeString(String(event.couponID))
            body.writeStaticString(#","data":"#)
            switch event.subject {
            case .ticket(let record): TicketRecordResponse(record).write(to: &body)
            case .coupon(let coupon): body.writeBytes(try JSONEncoder.coupon.encode(CouponResponse(coupon: coupon, now: event.occurredAt)))
            }
            body.writeStaticString(#","id":""#)
            body.writeString(event.id.uuidString.lowercased())
            body.writeStaticString(#"","occurred_at":""#)
            RFC3339.write(event.occurredAt, to: &body)
            body.writeStaticString(#"","type":""#)
            body.writeString(event.type.rawValue)
            body.writeStaticString(#""}"#)
        }
        body.writeStaticString("]")
        if let next {
            body.writeStaticString(#","next":""#)
            body.writeString(next.description)
            body.writeStaticString(#"""#)
        }
        body.writeStaticString("}")
        return body
    }
}
