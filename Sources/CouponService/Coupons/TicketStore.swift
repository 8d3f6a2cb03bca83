import Foundation
import Logging
import PostgresNIO

/// Tickets users hold, and every change to one (migrations/functions/): issue_tickets aside
/// (`IssuanceStore`), every ticket function is called here and answers one row (`TicketAnswer`), and
/// the checkout's counters are recorded here as the answers come, once per change.
struct TicketStore: Sendable {
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
    }

    /// One page of a user's tickets, newest first; `next` continues after the last one.
    struct UserPage: Sendable, Equatable {
        var tickets: [(couponName: String, record: TicketRecord)]
        var next: UserCursor?

        static func == (a: Self, b: Self) -> Bool {
            a.next == b.next && a.tickets.elementsEqual(b.tickets) { $0.couponName == $1.couponName && $0.record == $1.record }
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

    let database: Database
    let metrics: CouponMetrics

    /// The user's ticket, for the issuance path's one indexed read (it clears no lapse: a read only).
    func record(couponID: Int64, userID: String) async throws -> TicketRecord? {
        try await database.rows(
            """
            SELECT \(unescaped: TicketRecord.columns) FROM coupon_ticket_states
            WHERE coupon_id = \(couponID) AND user_id = \(userID)
            """
        ) { try TicketRecord.decode($0.makeRandomAccess()).record }.first ?? nil
    }

    /// The ticket a key names, where it stands now (`ticket_of`); a lapsed hold met is cleared.
    func record(_ key: TicketKey) async throws -> TicketRecord? {
        let found = try await database.rows(
            "SELECT \(unescaped: TicketRecord.columns) FROM ticket_of(\(key.couponID), \(key.userID)::text, \(key.code)::text, false)"
        ) { try TicketRecord.decode($0.makeRandomAccess()) }
        guard let (record, clearedLapsedHold) = found.first else { throw TicketAnswerError.noRowReturned }
        count(nil, clearedLapsedHold: clearedLapsedHold)
        return record
    }

    /// Redeems the ticket for `orderID`, or holds it for `holdSeconds` when given.
    func redeem(_ key: TicketKey, orderID: String, holdSeconds: Int?) async throws -> TicketAnswer {
        try await answer(
            """
            SELECT \(unescaped: TicketAnswer.columns)
            FROM redeem_ticket(\(key.couponID), \(key.userID)::text, \(key.code)::text, \(orderID), \(holdSeconds.map(Int32.init))::int)
            """)
    }

    /// Undoes the hold or redemption of `orderID` only.
    func restore(_ key: TicketKey, orderID: String) async throws -> TicketAnswer {
        try await answer(
            "SELECT \(unescaped: TicketAnswer.columns) FROM restore_ticket(\(key.couponID), \(key.userID)::text, \(key.code)::text, \(orderID))")
    }

    /// Frees the user's ticket with a fresh code and moves the counter down, in one transaction.
    func returnToPool(couponID: Int64, userID: String) async throws -> TicketAnswer {
        try await answer("SELECT \(unescaped: TicketAnswer.columns) FROM return_ticket(\(couponID), \(userID))")
    }

    /// Calls a ticket function and counts what its one row says.
    private func answer(_ call: PostgresQuery) async throws -> TicketAnswer {
        guard let answer = try await database.rows(call, { try TicketAnswer.decode($0).answer }).first else {
            throw TicketAnswerError.noRowReturned
        }
        count(answer.outcome, clearedLapsedHold: answer.clearedLapsedHold)
        return answer
    }

    /// The checkout's counters, one place for all of them: a read counts only a lapse it cleared. A
    /// change wrote its event: the feed's readers are told.
    private func count(_ outcome: TicketOutcome?, clearedLapsedHold: Bool) {
        if clearedLapsedHold { metrics.holdsLapsed.increment() }
        switch outcome {
        case .redeemed: metrics.redemptions.increment()
        case .holdPlaced: metrics.holdsPlaced.increment()
        case .holdConfirmed:
            metrics.redemptions.increment()
            metrics.holdsConfirmed.increment()
        case .restored: metrics.restores.increment()
        case .returned: metrics.returns.increment()
        case .issued, .alreadyIssued, .soldOut, .notStarted, .ended, .couponNotFound, .redeemedBefore, .holdRepeated,
            .alreadyRedeemed, .ticketHeld, .redemptionClosed, .ticketNotFound, .notRedeemed, .otherOrder, .ticketRedeemed, nil:
            break
        }
        if clearedLapsedHold || outcome.map(Self.writesEvent) == true { database.eventsCommitted() }
    }

    /// The outcomes whose call changed the ticket, and wrote its event.
    static func writesEvent(_ outcome: TicketOutcome) -> Bool {
        [.redeemed, .holdPlaced, .holdConfirmed, .restored, .returned].contains(outcome)
    }

    /// The ticket a code names, held by `holder` when given: a code that carries its coupon needs no
    /// read; a bare code (drawn before migration 0010) one of the bare codes' index, for its coupon (the
    /// ticket functions run on the coupon's shard). nil when no ticket has the bare code.
    func key(of code: Code, holder: String?) async throws -> TicketKey? {
        switch code {
        case .ofCoupon(let couponID, let code):
            return .code(code, couponID: couponID, holder: holder)
        case .bare(let code):
            let coupons = try await database.rows("SELECT coupon_id FROM coupon_tickets WHERE code = \(code) AND code NOT LIKE '%-%'") {
                try $0.decode(Int64.self)
            }
            return coupons.first.map { .code(code, couponID: $0, holder: holder) }
        }
    }

    /// The user's tickets of every coupon, newest first, from the `coupon_tickets_by_user` index.
    func tickets(ofUser userID: String, after cursor: UserCursor?, limit: Int) async throws -> UserPage {
        let rows = try await database.rows(Self.userTicketsQuery(userID: userID, after: cursor, limit: limit)) { row in
            let row = row.makeRandomAccess()
            let (record, _) = try TicketRecord.decode(row)
            return (record, try row[TicketRecord.columnCount].decode(String.self), try row[TicketRecord.columnCount + 1].decode(Int64.self))
        }
        var page = UserPage(tickets: [], next: nil)
        for (record, name, _) in rows { if let record { page.tickets.append((name, record)) } }
        if rows.count == limit, let (last, _, micros) = rows.last, let last {
            page.next = UserCursor(issuedAtMicros: micros, couponID: last.ticket.couponID)
        }
        return page
    }

    /// The statement behind `tickets(ofUser:after:limit:)`; the tests read its plan.
    static func userTicketsQuery(userID: String, after cursor: UserCursor?, limit: Int) -> PostgresQuery {
        """
        SELECT \(unescaped: TicketRecord.columns("t")), c.name, (extract(epoch FROM t.issued_at) * 1000000)::bigint
        FROM coupon_ticket_states AS t JOIN coupons AS c ON c.id = t.coupon_id
        WHERE t.user_id = \(userID)
          AND (t.issued_at, t.coupon_id) < (
              coalesce(timestamptz 'epoch' + \(cursor?.issuedAtMicros) * interval '1 microsecond', 'infinity'),
              \(cursor?.couponID ?? .max))
        ORDER BY t.issued_at DESC, t.coupon_id DESC
        LIMIT \(limit)
        """
    }

    /// The tickets `orderID` holds or redeemed, as `coupon_ticket_states` shows them (a lapsed hold
    /// holds nothing), found through `coupon_tickets_by_order`; at most 1,000, by coupon and number.
    func tickets(ofOrder orderID: String) async throws -> [TicketRecord] {
        try await database.rows(
            """
            SELECT \(unescaped: TicketRecord.columns("s")) FROM coupon_ticket_states AS s
            WHERE s.order_id = \(orderID)
              AND (s.coupon_id, s.number) IN (SELECT t.coupon_id, t.number FROM coupon_tickets AS t WHERE t.order_id = \(orderID))
            ORDER BY s.coupon_id, s.number
            LIMIT 1000
            """
        ) { try TicketRecord.decode($0.makeRandomAccess()).record }.compactMap { $0 }
    }

    /// The coupon's held tickets in number order after `number`; nil when there is no such coupon.
    func winners(couponID: Int64, after number: Int, limit: Int) async throws -> [TicketRecord]? {
        // One row with NULLs when the coupon exists but has no more winners.
        let rows = try await database.rows(
            """
            SELECT \(unescaped: TicketRecord.columns("t"))
            FROM coupons AS c LEFT JOIN LATERAL (
                SELECT * FROM coupon_ticket_states AS t
                WHERE t.coupon_id = c.id AND t.number > \(number) AND t.user_id IS NOT NULL
                ORDER BY t.number LIMIT \(limit)
            ) AS t ON true
            WHERE c.id = \(couponID)
            ORDER BY t.number
            """
        ) { try TicketRecord.decode($0.makeRandomAccess()).record }
        return rows.isEmpty ? nil : rows.compactMap { $0 }
    }
}
