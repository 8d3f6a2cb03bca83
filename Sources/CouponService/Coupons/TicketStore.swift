import Foundation
import Logging
import PostgresNIO

/// Tickets users hold: one user's ticket, a user's tickets across coupons, a coupon's winners, and
/// a ticket returned to the pool (migrations/functions/return_ticket.sql).
struct TicketStore: Sendable {
    /// What returning a ticket to the pool led to.
    enum Return: Sendable {
        case returned
        case redeemed
        case ticketNotFound
        case couponNotFound
    }

    /// One page of a user's tickets, newest first; `next` continues after the last one.
    struct UserPage: Sendable, Equatable {
        var tickets: [(couponName: String, held: HeldTicket)]
        var next: UserCursor?

        static func == (a: Self, b: Self) -> Bool {
            a.next == b.next && a.tickets.elementsEqual(b.tickets) { $0.couponName == $1.couponName && $0.held == $1.held }
        }
    }

    /// Where a page of a user's tickets ends: the last ticket's `issued_at` in microseconds since
    /// 1970 (exact, as PostgreSQL stores it) and its coupon. Written `MICROS-COUPON`.
    struct UserCursor: Sendable, Equatable, LosslessStringConvertible {
        var issuedAtMicros: Int64
        var couponID: Int64

        init(issuedAtMicros: Int64, couponID: Int64) {
            self.issuedAtMicros = issuedAtMicros
            self.couponID = couponID
        }

        init?(_ text: String) {
            let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            // Both in range: an instant of a four-digit year (PostgreSQL overflows past it), a coupon id.
            guard parts.count == 2, let micros = parts[0].plainInteger(), let couponID = parts[1].plainInteger(),
                RFC3339.instants.contains(Double(micros) / 1_000_000), couponID > 0
            else { return nil }
            self.init(issuedAtMicros: micros, couponID: couponID)
        }

        var description: String { "\(issuedAtMicros)-\(couponID)" }
    }

    let primary: PrimaryDatabase
    var client: PostgresClient { primary.client }
    let logger: Logger

    /// The user's ticket, for the issuance path's one indexed read.
    func ticket(couponID: Int64, userID: String) async throws -> IssuedTicket? {
        let rows = try await client.query(
            """
            SELECT number, code, issued_at FROM coupon_tickets
            WHERE coupon_id = \(couponID) AND user_id = \(userID)
            """, logger: logger)
        for try await (number, code, issuedAt) in rows.decode((Int, String, Date).self) {
            return IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        }
        return nil
    }

    /// The user's ticket with its redemption.
    func heldTicket(couponID: Int64, userID: String) async throws -> HeldTicket? {
        let rows = try await client.query(
            """
            SELECT number, code, issued_at, redeemed_at, order_id FROM coupon_tickets
            WHERE coupon_id = \(couponID) AND user_id = \(userID)
            """, logger: logger)
        for try await (number, code, issuedAt, redeemedAt, orderID) in rows.decode((Int, String, Date, Date?, String?).self) {
            return HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID)
        }
        return nil
    }

    /// The user's tickets of every coupon, newest first, from the `coupon_tickets_by_user` index.
    func tickets(ofUser userID: String, after cursor: UserCursor?, limit: Int) async throws -> UserPage {
        let rows = try await client.query(Self.userTicketsQuery(userID: userID, after: cursor, limit: limit), logger: logger)
        var page = UserPage(tickets: [], next: nil)
        var last: UserCursor?
        for try await (couponID, name, number, code, issuedAt, redeemedAt, orderID, micros) in rows.decode(
            (Int64, String, Int, String, Date, Date?, String?, Int64).self)
        {
            let held = HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID)
            if let held { page.tickets.append((name, held)) }
            last = UserCursor(issuedAtMicros: micros, couponID: couponID)
        }
        if page.tickets.count == limit { page.next = last }
        return page
    }

    /// The statement behind `tickets(ofUser:after:limit:)`; the tests read its plan.
    static func userTicketsQuery(userID: String, after cursor: UserCursor?, limit: Int) -> PostgresQuery {
        """
        SELECT t.coupon_id, c.name, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id,
               (extract(epoch FROM t.issued_at) * 1000000)::bigint
        FROM coupon_tickets AS t JOIN coupons AS c ON c.id = t.coupon_id
        WHERE t.user_id = \(userID)
          AND (t.issued_at, t.coupon_id) < (
              coalesce(timestamptz 'epoch' + \(cursor?.issuedAtMicros) * interval '1 microsecond', 'infinity'),
              \(cursor?.couponID ?? .max))
        ORDER BY t.issued_at DESC, t.coupon_id DESC
        LIMIT \(limit)
        """
    }

    /// The coupon's held tickets in number order after `number`; nil when there is no such coupon.
    func winners(couponID: Int64, after number: Int, limit: Int) async throws -> [HeldTicket]? {
        let rows = try await client.query(
            """
            SELECT t.user_id, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id
            FROM coupons AS c LEFT JOIN LATERAL (
                SELECT * FROM coupon_tickets AS t
                WHERE t.coupon_id = c.id AND t.number > \(number) AND t.user_id IS NOT NULL
                ORDER BY t.number LIMIT \(limit)
            ) AS t ON true
            WHERE c.id = \(couponID)
            ORDER BY t.number
            """, logger: logger)
        var found = false
        var winners: [HeldTicket] = []
        // One row with NULLs when the coupon exists but has no more winners.
        for try await (userID, number, code, issuedAt, redeemedAt, orderID) in rows.decode(
            (String?, Int?, String?, Date?, Date?, String?).self)
        {
            found = true
            let held = HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID)
            if let held { winners.append(held) }
        }
        return found ? winners : nil
    }

    /// Frees the user's ticket with a fresh code and moves the counter down, in one transaction.
    func returnToPool(couponID: Int64, userID: String) async throws -> Return {
        let rows = try await client.query("SELECT return_ticket(\(couponID), \(userID))", logger: logger)
        for try await outcome in rows.decode(String.self) {
            let known: Return
            switch TicketOutcome(rawValue: outcome) {
            case .returned: known = .returned
            case .ticketRedeemed: known = .redeemed
            case .ticketNotFound: known = .ticketNotFound
            case .couponNotFound: known = .couponNotFound
            default: throw TicketStoreError.unknownOutcome(outcome)
            }
            return known
        }
        throw TicketStoreError.noRowReturned
    }
}

enum TicketStoreError: Error {
    case unknownOutcome(String)
    case noRowReturned
}
