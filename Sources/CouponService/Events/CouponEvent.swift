// The events of the outbox (migrations/0012_outbox.sql), as the feed and the webhooks send them.
import Crypto
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

    /// The columns of `outbox` every read selects, in the order `events(of:after:)` reads them: the
    /// row's, then a ticket's as `TicketRecord.decode` reads them, then a coupon's as
    /// `CouponStore.coupon` does, then a group's tickets (migrations/0014).
    static let columns = """
        position, id, type, occurred_at, \
        coupon_id, user_id, number, code, issued_at, redeemed_at, order_id, hold_until, false, \
        coupon_id, name, quantity, issued_count, starts_at, ends_at, redeem_until, created_at, \
        numbers, codes, user_ids
        """

    /// The events of one outbox row after `cursor`, in feed order: the row's one event, or a group's
    /// tickets numbered from 1 within the row, as the view `outbox_events` reads them (the same ids:
    /// `groupEventID`). A group's row is read as arrays and expanded here, not by the view: a page of
    /// 100 events is then a row or two on the wire, not 100 rows of 23 columns.
    static func events(of row: PostgresRow, after cursor: EventCursor) throws -> [CouponEvent] {
        let columns = row.makeRandomAccess()
        let name = try columns[2].decode(String.self)
        guard let type = EventType(rawValue: name) else { throw CouponEventError.unknownType(name) }
        let (position, rowID, occurredAt, couponID) = (
            try columns[0].decode(Int64.self), try columns[1].decode(UUID.self), try columns[3].decode(Date.self),
            try columns[4].decode(Int64.self)
        )
        if let numbers = try columns[21].decode([Int32]?.self) {
            let (codes, users, issuedAt) = (try columns[22].decode([String].self), try columns[23].decode([String].self), try columns[8].decode(Date.self))
            guard codes.count == numbers.count, users.count == numbers.count else { throw CouponEventError.unevenGroup(position) }
            let first = position == cursor.position ? (cursor.within ?? numbers.count) + 1 : 1
            guard first <= numbers.count else { return [] }
            return (first...numbers.count).map { within in
                let ticket = IssuedTicket(
                    couponID: couponID, userID: users[within - 1], number: Int(numbers[within - 1]), code: codes[within - 1], issuedAt: issuedAt)
                return CouponEvent(
                    cursor: EventCursor(position: position, within: within < numbers.count ? within : nil),
                    id: groupEventID(row: rowID, within: within), type: type, couponID: couponID, occurredAt: occurredAt,
                    subject: .ticket(TicketRecord(ticket: ticket, redemption: nil)))
            }
        }
        guard EventCursor(position: position) > cursor else { return [] }
        let subject: Subject
        if let record = try TicketRecord.decode(columns, from: 4).record {
            subject = .ticket(record)
        } else {
            subject = .coupon(try CouponStore.coupon(columns, from: 13))
        }
        return [CouponEvent(cursor: EventCursor(position: position), id: rowID, type: type, couponID: couponID, occurredAt: occurredAt, subject: subject)]
    }

    /// The id of the `within`th event of a group's row: the md5 of "<row id>.<within>", as
    /// `outbox_events` draws it (`md5(o.id::text || '.' || within)::uuid`).
    static func groupEventID(row: UUID, within: Int) -> UUID {
        let digest = Array(Insecure.MD5.hash(data: Data("\(row.uuidString.lowercased()).\(within)".utf8)))
        return UUID(uuid: (
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
            digest[8], digest[9], digest[10], digest[11], digest[12], digest[13], digest[14], digest[15]
        ))
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
    /// A group's row whose arrays differ in length (the outbox written by hand).
    case unevenGroup(Int64)
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
