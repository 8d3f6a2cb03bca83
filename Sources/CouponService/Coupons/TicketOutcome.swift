import Foundation

/// What a request about one ticket found or led to, and whether it cleared a lapsed hold on the way:
/// a lapse is counted once, by whichever request clears it (`coupon_holds_lapsed_total`).
struct TicketAnswer<Outcome: Sendable & Equatable>: Sendable, Equatable {
    var outcome: Outcome
    var clearedLapsedHold: Bool
}

/// Every outcome the ticket functions return (`issue_tickets`, `redeem_ticket`, `restore_ticket`,
/// `return_ticket` in migrations/functions/), spelled once: their `outcome` column, the problem
/// `code` of a refusal and the `reason` label of `coupon_requests_refused_total`.
/// `ProblemCodeTests` holds them against the SQL files and openapi.yaml.
enum TicketOutcome: String, Sendable, CaseIterable {
    // issue_tickets
    case issued, held
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

    /// True when the outcome refuses what was asked, and is answered as a problem with its name as the code.
    var isRefusal: Bool {
        switch self {
        case .issued, .held, .redeemed, .redeemedBefore, .holdPlaced, .holdRepeated, .holdConfirmed, .restored,
            .notRedeemed, .returned:
            false
        case .soldOut, .notStarted, .ended, .couponNotFound, .alreadyRedeemed, .ticketHeld, .redemptionClosed,
            .ticketNotFound, .otherOrder, .ticketRedeemed:
            true
        }
    }
}

/// What asking for a ticket led to.
enum IssueOutcome: Sendable, Equatable {
    /// A ticket was issued now and is committed.
    case issued(IssuedTicket)
    /// The user already held this ticket: a retry, answered the same way.
    case held(IssuedTicket)
    case soldOut
    case notStarted
    case ended
    case couponNotFound

    /// The outcomes `issue_tickets` returns.
    static let names: [TicketOutcome] = [.issued, .held, .soldOut, .notStarted, .ended, .couponNotFound]

    var name: TicketOutcome {
        switch self {
        case .issued: .issued
        case .held: .held
        case .soldOut: .soldOut
        case .notStarted: .notStarted
        case .ended: .ended
        case .couponNotFound: .couponNotFound
        }
    }

    /// A row of `issue_tickets`: the outcome's name, and the ticket when there is one.
    init(_ name: String, couponID: Int64, userID: String, _ number: Int?, _ code: String?, _ issuedAt: Date?) throws {
        func ticket() throws -> IssuedTicket {
            guard let ticket = IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
            else { throw IssuanceError.unknownOutcome(name) }
            return ticket
        }
        switch TicketOutcome(rawValue: name) {
        case .issued: self = .issued(try ticket())
        case .held: self = .held(try ticket())
        case .soldOut: self = .soldOut
        case .notStarted: self = .notStarted
        case .ended: self = .ended
        case .couponNotFound: self = .couponNotFound
        default: throw IssuanceError.unknownOutcome(name)
        }
    }
}

extension IssueOutcome {
    /// Each request's outcome, in the order asked, from one transaction's outcome per user: a user
    /// asked twice is issued the ticket once and the later request is its retry (`held`). nil for a
    /// user the transaction did not answer.
    static func perRequest(_ userIDs: [String], from outcomes: [String: IssueOutcome]) -> [IssueOutcome?] {
        var answered: Set<String> = []
        return userIDs.map { userID in
            guard let outcome = outcomes[userID] else { return nil }
            if case .issued(let ticket) = outcome, !answered.insert(userID).inserted { return .held(ticket) }
            return outcome
        }
    }
}
