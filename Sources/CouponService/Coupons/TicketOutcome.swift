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
    case alreadyRedeemed = "already_redeemed"
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
        case .issued, .held, .redeemed, .redeemedBefore, .restored, .notRedeemed, .returned: false
        case .soldOut, .notStarted, .ended, .couponNotFound, .alreadyRedeemed, .redemptionClosed, .ticketNotFound,
            .otherOrder, .ticketRedeemed:
            true
        }
    }
}
