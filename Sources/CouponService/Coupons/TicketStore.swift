import Foundation
import Logging
import PostgresNIO

/// Tickets users hold: one user's ticket, a user's tickets across coupons, a coupon's winners, and
/// a ticket returned to the pool (migrations/functions/return_ticket.sql).
struct TicketStore: Sendable {
    /// What returning a ticket to the pool led to.
    enum Return: Sendable, Equatable {
        case returned
        case redeemed
        /// Held for an order whose hold has not lapsed.
        case held
        case ticketNotFound
        case couponNotFound
    }

    /// A ticket's code as a path names it: `<coupon id>-<32 hex digits>`, drawn since migration 0010
    /// (the id as PostgreSQL writes it, up to 18 digits), or the 32 hex digits alone of a code drawn
    /// before. Nothing else is any ticket's code.
    enum Code: Sendable, Equatable {
        case ofCoupon(Int64, String)
        case bare(String)

        init?(_ text: String) {
            func isRandomPart(_ part: Substring) -> Bool {
                part.utf8.count == 32 && part.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
            }
            let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 1, isRandomPart(parts[0]) {
                self = .bare(text)
            } else if parts.count == 2, parts[0].first != "0", let couponID = parts[0].plainInteger(maxDigits: 18),
                isRandomPart(parts[1])
            {
                self = .ofCoupon(couponID, text)
            } else {
                return nil
            }
        }

        var text: String {
            switch self {
            case .ofCoupon(_, let text), .bare(let text): text
            }
        }
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

    /// The user's ticket where it stands at checkout; a lapsed hold met is cleared.
    func heldTicket(couponID: Int64, userID: String) async throws -> TicketAnswer<HeldTicket>? {
        try await found(
            """
            SELECT \(unescaped: Self.stateColumns) FROM coupon_ticket_states
            WHERE coupon_id = \(couponID) AND user_id = \(userID)
            """)
    }

    /// The ticket a code names, held by a user (by `holder`, when given: a caller who acts only for
    /// that user finds, and clears, nothing of anyone else's); a lapsed hold met is cleared.
    func ticket(code: Code, holder: String?) async throws -> TicketAnswer<HeldTicket>? {
        try await found(Self.codeQuery(code, holder: holder))
    }

    /// The statement behind `ticket(code:holder:)`, one read of one index: a code that carries its
    /// coupon in the (coupon_id, code) index, on the coupon's own shard; a bare code in the index of
    /// bare codes (migrations/0010). The tests read its plan.
    static func codeQuery(_ code: Code, holder: String?) -> PostgresQuery {
        switch code {
        case .ofCoupon(let couponID, let code):
            """
            SELECT \(unescaped: stateColumns) FROM coupon_ticket_states
            WHERE coupon_id = \(couponID) AND code = \(code) AND user_id = coalesce(\(holder)::text, user_id)
            """
        case .bare(let code):
            """
            SELECT \(unescaped: stateColumns) FROM coupon_ticket_states
            WHERE code = \(code) AND code NOT LIKE '%-%' AND user_id = coalesce(\(holder)::text, user_id)
            """
        }
    }

    /// The coupon of a bare code's ticket, for the routes that change it (their functions run on the coupon's shard).
    func couponID(ofBareCode code: String) async throws -> Int64? {
        let rows = try await client.query(
            "SELECT coupon_id FROM coupon_tickets WHERE code = \(code) AND code NOT LIKE '%-%' AND user_id IS NOT NULL",
            logger: logger)
        for try await couponID in rows.decode(Int64.self) { return couponID }
        return nil
    }

    private static let stateColumns = "coupon_id, user_id, number, code, issued_at, redeemed_at, order_id, hold_until, hold_lapsed"

    /// Reads one ticket through `coupon_ticket_states`; a lapsed hold it shows is then cleared, by
    /// this request or by one that came first (only the one that clears it says so). The clear judges
    /// the lapse on `statement_timestamp()`, as the view does: Citus refuses a volatile function such
    /// as `clock_timestamp()` in a modification of a distributed table.
    private func found(_ query: PostgresQuery) async throws -> TicketAnswer<HeldTicket>? {
        let rows = try await client.query(query, logger: logger)
        var found: (HeldTicket, Bool)?
        for try await (couponID, userID, number, code, issuedAt, redeemedAt, orderID, holdUntil, lapsed) in rows.decode(
            (Int64, String, Int, String, Date, Date?, String?, Date?, Bool).self)
        {
            let held = HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID, holdUntil: holdUntil)
            if let held { found = (held, lapsed) }
        }
        guard let (held, lapsed) = found else { return nil }
        guard lapsed else { return TicketAnswer(outcome: held, clearedLapsedHold: false) }
        let cleared = try await client.query(
            """
            UPDATE coupon_tickets SET order_id = NULL, hold_until = NULL
            WHERE coupon_id = \(held.ticket.couponID) AND number = \(held.ticket.number) AND hold_until <= statement_timestamp()
            RETURNING number
            """, logger: logger)
        var clearedHere = false
        for try await _ in cleared.decode(Int.self) { clearedHere = true }
        return TicketAnswer(outcome: held, clearedLapsedHold: clearedHere)
    }

    /// The user's tickets of every coupon, newest first, from the `coupon_tickets_by_user` index.
    func tickets(ofUser userID: String, after cursor: UserCursor?, limit: Int) async throws -> UserPage {
        let rows = try await client.query(Self.userTicketsQuery(userID: userID, after: cursor, limit: limit), logger: logger)
        var page = UserPage(tickets: [], next: nil)
        var last: UserCursor?
        for try await (couponID, name, number, code, issuedAt, redeemedAt, orderID, holdUntil, micros) in rows.decode(
            (Int64, String, Int, String, Date, Date?, String?, Date?, Int64).self)
        {
            let held = HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID, holdUntil: holdUntil)
            if let held { page.tickets.append((name, held)) }
            last = UserCursor(issuedAtMicros: micros, couponID: couponID)
        }
        if page.tickets.count == limit { page.next = last }
        return page
    }

    /// The statement behind `tickets(ofUser:after:limit:)`; the tests read its plan.
    static func userTicketsQuery(userID: String, after cursor: UserCursor?, limit: Int) -> PostgresQuery {
        """
        SELECT t.coupon_id, c.name, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id, t.hold_until,
               (extract(epoch FROM t.issued_at) * 1000000)::bigint
        FROM coupon_ticket_states AS t JOIN coupons AS c ON c.id = t.coupon_id
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
            SELECT t.user_id, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id, t.hold_until
            FROM coupons AS c LEFT JOIN LATERAL (
                SELECT * FROM coupon_ticket_states AS t
                WHERE t.coupon_id = c.id AND t.number > \(number) AND t.user_id IS NOT NULL
                ORDER BY t.number LIMIT \(limit)
            ) AS t ON true
            WHERE c.id = \(couponID)
            ORDER BY t.number
            """, logger: logger)
        var found = false
        var winners: [HeldTicket] = []
        // One row with NULLs when the coupon exists but has no more winners.
        for try await (userID, number, code, issuedAt, redeemedAt, orderID, holdUntil) in rows.decode(
            (String?, Int?, String?, Date?, Date?, String?, Date?).self)
        {
            found = true
            let held = HeldTicket(
                couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                orderID: orderID, holdUntil: holdUntil)
            if let held { winners.append(held) }
        }
        return found ? winners : nil
    }

    /// Frees the user's ticket with a fresh code and moves the counter down, in one transaction.
    func returnToPool(couponID: Int64, userID: String) async throws -> TicketAnswer<Return> {
        let rows = try await client.query("SELECT * FROM return_ticket(\(couponID), \(userID))", logger: logger)
        for try await (outcome, lapsed) in rows.decode((String, Bool).self) {
            let known: Return
            switch TicketOutcome(rawValue: outcome) {
            case .returned: known = .returned
            case .ticketRedeemed: known = .redeemed
            case .ticketHeld: known = .held
            case .ticketNotFound: known = .ticketNotFound
            case .couponNotFound: known = .couponNotFound
            default: throw TicketStoreError.unknownOutcome(outcome)
            }
            return TicketAnswer(outcome: known, clearedLapsedHold: lapsed)
        }
        throw TicketStoreError.noRowReturned
    }
}

enum TicketStoreError: Error {
    case unknownOutcome(String)
    case noRowReturned
}
