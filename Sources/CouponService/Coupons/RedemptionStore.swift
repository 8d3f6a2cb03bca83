import Foundation
import Logging
import PostgresNIO

/// Redeems or holds tickets at checkout and restores them when the order is cancelled
/// (`redeem_ticket`, `restore_ticket`, migrations/functions/). The ticket's row lock orders every
/// change to one ticket; a lapsed hold met on the way is cleared there and reported once.
struct RedemptionStore: Sendable {
    /// What redeeming or holding led to.
    enum Redeem: Sendable, Equatable {
        /// Redeemed now for this order.
        case redeemed(HeldTicket)
        /// Redeemed before for the same order: a retry, answered the same way.
        case redeemedBefore(HeldTicket)
        /// Held now for this order until its `hold.until`.
        case holdPlaced(HeldTicket)
        /// Held before for the same order: the hold stays as it was.
        case holdRepeated(HeldTicket)
        /// The order's hold confirmed: redeemed now.
        case holdConfirmed(HeldTicket)
        /// Redeemed for another order.
        case alreadyRedeemed
        /// Held for another order, whose hold has not lapsed.
        case ticketHeld
        /// At or after the coupon's `redeem_until`.
        case closed
        case ticketNotFound
        case couponNotFound
    }

    /// What restoring led to.
    enum Restore: Sendable, Equatable {
        /// The order's hold or redemption undone.
        case restored(HeldTicket)
        /// No order holds it: nothing to undo, answered the same way.
        case notRedeemed(HeldTicket)
        /// Held or redeemed for another order, which only that order's cancellation undoes.
        case otherOrder
        case ticketNotFound
        case couponNotFound
    }

    let primary: PrimaryDatabase
    var client: PostgresClient { primary.client }
    let logger: Logger

    /// Redeems the ticket for `orderID`, or holds it for `holdSeconds` when given.
    func redeem(_ key: TicketKey, orderID: String, holdSeconds: Int?) async throws -> TicketAnswer<Redeem> {
        try await answer(
            of: key, "SELECT * FROM redeem_ticket(\(key.couponID), \(key.userID)::text, \(key.code)::text, \(orderID), \(holdSeconds.map(Int32.init))::int)"
        ) { outcome, held throws(TicketStoreError) in
            switch outcome {
            case .redeemed: .redeemed(try held())
            case .redeemedBefore: .redeemedBefore(try held())
            case .holdPlaced: .holdPlaced(try held())
            case .holdRepeated: .holdRepeated(try held())
            case .holdConfirmed: .holdConfirmed(try held())
            case .alreadyRedeemed: .alreadyRedeemed
            case .ticketHeld: .ticketHeld
            case .redemptionClosed: .closed
            case .ticketNotFound: .ticketNotFound
            case .couponNotFound: .couponNotFound
            default: throw .unknownOutcome(outcome.rawValue)
            }
        }
    }

    /// Undoes the hold or redemption of `orderID` only.
    func restore(_ key: TicketKey, orderID: String) async throws -> TicketAnswer<Restore> {
        try await answer(of: key, "SELECT * FROM restore_ticket(\(key.couponID), \(key.userID)::text, \(key.code)::text, \(orderID))") {
            outcome, held throws(TicketStoreError) in
            switch outcome {
            case .restored: .restored(try held())
            case .notRedeemed: .notRedeemed(try held())
            case .otherOrder: .otherOrder
            case .ticketNotFound: .ticketNotFound
            case .couponNotFound: .couponNotFound
            default: throw .unknownOutcome(outcome.rawValue)
            }
        }
    }

    /// Runs a ticket function and reads its one row: the outcome, whether a lapsed hold was cleared, the ticket's columns.
    private func answer<Outcome>(
        of key: TicketKey, _ query: PostgresQuery,
        _ outcome: (TicketOutcome, () throws(TicketStoreError) -> HeldTicket) throws(TicketStoreError) -> Outcome
    ) async throws -> TicketAnswer<Outcome> {
        let rows = try await client.query(query, logger: logger)
        for try await (name, lapsed, userID, number, code, issuedAt, redeemedAt, orderID, holdUntil) in rows.decode(
            (String, Bool, String?, Int?, String?, Date?, Date?, String?, Date?).self)
        {
            guard let known = TicketOutcome(rawValue: name) else { throw TicketStoreError.unknownOutcome(name) }
            let held = { () throws(TicketStoreError) -> HeldTicket in
                guard
                    let held = HeldTicket(
                        couponID: key.couponID, userID: userID, number: number, code: code, issuedAt: issuedAt,
                        redeemedAt: redeemedAt, orderID: orderID, holdUntil: holdUntil)
                else { throw .unknownOutcome(name) }
                return held
            }
            return TicketAnswer(outcome: try outcome(known, held), clearedLapsedHold: lapsed)
        }
        throw TicketStoreError.noRowReturned
    }
}
