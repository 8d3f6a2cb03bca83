// The ticket vocabulary, from SQL to HTTP: a ticket and its record, every outcome a ticket function
// answers, and the one row type they answer in (`ticket_answer`, migrations/0011).
import Foundation
import HTTPTypes
import PostgresNIO

/// Every outcome the ticket functions return (`issue_tickets`, `redeem_ticket`, `restore_ticket`,
/// `return_ticket` in migrations/functions/), spelled once: their `outcome` column, the HTTP status it
/// is answered with, and for a refusal its problem's `code` (the name), its detail and the `reason`
/// label of `coupon_requests_refused_total`. `ProblemCodeTests` holds the names against the SQL files
/// and openapi.yaml.
enum TicketOutcome: String, Sendable, CaseIterable {
    // issue_tickets
    case issued
    case alreadyIssued = "already_issued"
    case soldOut = "sold_out"
    case notStarted = "not_started"
    case ended
    case couponNotFound = "coupon_not_found"
    // redeem_ticket
    case redeemed
    case redeemedBefore = "redeemed_before"
    case holdPlaced = "hold_placed"
    case holdRepeated = "hold_repeated"
    case holdConfirmed = "hold_confirmed"
    case alreadyRedeemed = "already_redeemed"
    case ticketHeld = "ticket_held"
    case redemptionClosed = "redemption_closed"
    case ticketNotFound = "ticket_not_found"
    // restore_ticket
    case restored
    case notRedeemed = "not_redeemed"
    case otherOrder = "other_order"
    // return_ticket
    case returned
    case ticketRedeemed = "ticket_redeemed"

    /// How it is answered: a status, and for a refusal the problem's detail.
    var answer: (status: HTTPResponse.Status, refusal: String?) {
        switch self {
        case .issued, .redeemed, .holdPlaced: (.created, nil)
        case .alreadyIssued, .redeemedBefore, .holdRepeated, .holdConfirmed, .restored, .notRedeemed: (.ok, nil)
        case .returned: (.noContent, nil)
        case .soldOut: (.conflict, "Every ticket of this coupon has been issued.")
        case .notStarted: (.conflict, "The sale of this coupon has not started yet.")
        case .ended: (.conflict, "The sale of this coupon has ended.")
        case .couponNotFound: (.notFound, "No coupon has this id.")
        case .ticketNotFound: (.notFound, "No ticket held by a user has this coupon and user, or this code.")
        case .alreadyRedeemed: (.conflict, "This ticket has been redeemed for another order.")
        case .ticketHeld:
            (.conflict, "This ticket is held for another order; it is free again once that hold lapses or is restored.")
        case .redemptionClosed: (.conflict, "Tickets of this coupon can no longer be redeemed.")
        case .otherOrder:
            (.conflict, "This ticket is held or redeemed for another order; only that order's cancellation restores it.")
        case .ticketRedeemed: (.conflict, "A redeemed ticket cannot return to the pool; restore it first.")
        }
    }

    /// True when the outcome refuses what was asked, and is answered as a problem with its name as the code.
    var isRefusal: Bool { answer.refusal != nil }

    /// The outcomes `issue_tickets` returns.
    static let ofIssuance: [TicketOutcome] = [.issued, .alreadyIssued, .soldOut, .notStarted, .ended, .couponNotFound]
}

/// One row of a ticket function: what happened, the ticket after it (as `coupon_ticket_states` shows
/// it; `returned`: before), and whether this call cleared a lapsed hold (each lapse is counted once, by
/// whichever call clears it: `coupon_holds_lapsed_total`). Every outcome but a refusal has a ticket.
struct TicketAnswer: Sendable, Equatable {
    var outcome: TicketOutcome
    var ticket: TicketRecord? = nil
    var clearedLapsedHold: Bool = false

    /// The ticket of an answer that is not a refusal.
    var granted: TicketRecord? { outcome.isRefusal ? nil : ticket }

    /// The columns every ticket function answers: the outcome, then the ticket's (`TicketRecord.columns`).
    static let columns = "outcome, " + TicketRecord.columns

    /// A row of `columns`. The user's id is kept apart, as a refusal of `issue_tickets` names the user
    /// it refused.
    static func decode(_ row: PostgresRow) throws -> (userID: String?, answer: TicketAnswer) {
        let row = row.makeRandomAccess()
        let name = try row[0].decode(String.self)
        guard let outcome = TicketOutcome(rawValue: name) else { throw TicketAnswerError.unknownOutcome(name) }
        let (ticket, lapsed) = try TicketRecord.decode(row, from: 1)
        guard outcome.isRefusal || ticket != nil else { throw TicketAnswerError.noTicket(name) }
        return (try row[2].decode(String?.self), TicketAnswer(outcome: outcome, ticket: ticket, clearedLapsedHold: lapsed))
    }

    /// Each request's answer, in the order asked, from one transaction's answer per user: a user asked
    /// twice is issued the ticket once and the later request is answered `alreadyIssued`. nil for a
    /// user the transaction did not answer.
    static func perRequest(_ userIDs: [String], from answers: [String: TicketAnswer]) -> [TicketAnswer?] {
        var answered: Set<String> = []
        return userIDs.map { userID in
            guard var answer = answers[userID] else { return nil }
            if answer.outcome == .issued, !answered.insert(userID).inserted { answer.outcome = .alreadyIssued }
            return answer
        }
    }
}

enum TicketAnswerError: Error {
    case unknownOutcome(String)
    /// An outcome that is not a refusal came without the ticket's columns.
    case noTicket(String)
    case noRowReturned
}

/// What a user holds: one ticket of one coupon.
struct IssuedTicket: Sendable, Equatable {
    var couponID: Int64
    var userID: String
    var number: Int
    var code: String
    var issuedAt: Date
}

/// A user's ticket and where it stands at checkout: redeemed for an order, held for one, or neither.
struct TicketRecord: Sendable, Equatable {
    var ticket: IssuedTicket
    var redemption: Redemption?
    var hold: OrderHold? = nil

    /// Where the ticket stands at checkout.
    enum State: String, Sendable { case issued, held, redeemed }

    var state: State { redemption != nil ? .redeemed : hold != nil ? .held : .issued }
    /// The order that holds or redeemed the ticket.
    var orderID: String? { redemption?.orderID ?? hold?.orderID }
}

/// A ticket used at checkout.
struct Redemption: Sendable, Equatable {
    var orderID: String
    var redeemedAt: Date
}

/// A ticket held for an order while it is paid, until `until` on the database's clock; past it the
/// hold has lapsed and the ticket is free for any order (migrations/functions/coupon_ticket_states.sql).
struct OrderHold: Sendable, Equatable {
    var orderID: String
    var until: Date
}

extension IssuedTicket {
    /// The ticket in a row's columns; nil when they are NULL (a row that holds no ticket).
    init?(couponID: Int64, userID: String?, number: Int?, code: String?, issuedAt: Date?) {
        guard let userID, let number, let code, let issuedAt else { return nil }
        self.init(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
    }
}

extension TicketRecord {
    /// The ticket, its redemption or its hold in a row's columns (a hold as judged now: a lapsed one's
    /// columns come NULL); nil when they hold no ticket.
    init?(
        couponID: Int64, userID: String?, number: Int?, code: String?, issuedAt: Date?, redeemedAt: Date?, orderID: String?,
        holdUntil: Date? = nil
    ) {
        guard let ticket = IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        else { return nil }
        let redemption = orderID.flatMap { orderID in redeemedAt.map { Redemption(orderID: orderID, redeemedAt: $0) } }
        let hold = redemption == nil ? orderID.flatMap { orderID in holdUntil.map { OrderHold(orderID: orderID, until: $0) } } : nil
        self.init(ticket: ticket, redemption: redemption, hold: hold)
    }
}

/// Which ticket a checkout route means: a user's ticket of a coupon, or the ticket of a coupon with a
/// code. With a code, `userID` (when set) must be its holder: a caller who may act only for that user
/// finds no one else's ticket by its code.
struct TicketKey: Sendable, Equatable {
    var couponID: Int64
    var userID: String?
    var code: String?

    static func holder(couponID: Int64, userID: String) -> Self { Self(couponID: couponID, userID: userID, code: nil) }
    static func code(_ code: String, couponID: Int64, holder: String?) -> Self { Self(couponID: couponID, userID: holder, code: code) }
}

extension TicketRecord {
    /// The columns of `coupon_ticket_states` every read of a ticket selects, in the order `decode` reads them.
    static let columns = columns(nil)
    static let columnCount = 9

    static func columns(_ table: String?) -> String {
        ["coupon_id", "user_id", "number", "code", "issued_at", "redeemed_at", "order_id", "hold_until", "hold_lapsed"]
            .map { column in table.map { "\($0).\(column)" } ?? column }.joined(separator: ", ")
    }

    /// The record in `columns` from `first` on (nil when they hold no ticket), and whether the hold
    /// they show lapsed and was cleared; the one place they are decoded.
    static func decode(_ row: PostgresRandomAccessRow, from first: Int = 0) throws -> (record: TicketRecord?, lapsed: Bool) {
        let couponID = try row[first].decode(Int64?.self)
        let record = try couponID.flatMap {
            TicketRecord(
                couponID: $0, userID: try row[first + 1].decode(String?.self), number: try row[first + 2].decode(Int?.self),
                code: try row[first + 3].decode(String?.self), issuedAt: try row[first + 4].decode(Date?.self),
                redeemedAt: try row[first + 5].decode(Date?.self), orderID: try row[first + 6].decode(String?.self),
                holdUntil: try row[first + 7].decode(Date?.self))
        }
        return (record, try row[first + 8].decode(Bool?.self) ?? false)
    }
}
