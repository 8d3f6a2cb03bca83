import Foundation
import Logging
import PostgresNIO

/// Redeems tickets at checkout and restores them when the order is cancelled (`redeem_ticket`,
/// `restore_ticket`, migrations/functions/). The ticket's row lock orders every change to one ticket.
struct RedemptionStore: Sendable {
    /// What redeeming led to.
    enum Redeem: Sendable, Equatable {
        /// Redeemed now for this order.
        case redeemed(HeldTicket)
        /// Redeemed before for the same order: a retry, answered the same way.
        case redeemedBefore(HeldTicket)
        /// Redeemed for another order.
        case alreadyRedeemed
        /// At or after the coupon's `redeem_until`.
        case closed
        case ticketNotFound
        case couponNotFound
    }

    /// What restoring led to.
    enum Restore: Sendable, Equatable {
        case restored(HeldTicket)
        /// Not redeemed: nothing to undo, answered the same way.
        case notRedeemed(HeldTicket)
        /// Redeemed for another order, which only that order's cancellation undoes.
        case otherOrder
        case ticketNotFound
        case couponNotFound
    }

    let primary: PrimaryDatabase
    var client: PostgresClient { primary.client }
    let logger: Logger

    func redeem(couponID: Int64, userID: String, orderID: String) async throws -> Redeem {
        let rows = try await client.query(
            "SELECT outcome, number, code, issued_at, redeemed_at, order_id FROM redeem_ticket(\(couponID), \(userID), \(orderID))",
            logger: logger)
        for try await (outcome, number, code, issuedAt, redeemedAt, orderID) in rows.decode(
            (String, Int?, String?, Date?, Date?, String?).self)
        {
            func held() throws -> HeldTicket {
                let held = HeldTicket(
                    couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt, redeemedAt: redeemedAt,
                    orderID: orderID)
                guard let held else { throw TicketStoreError.unknownOutcome(outcome) }
                return held
            }
            switch TicketOutcome(rawValue: outcome) {
            case .redeemed: return .redeemed(try held())
            case .redeemedBefore: return .redeemedBefore(try held())
            case .alreadyRedeemed: return .alreadyRedeemed
            case .redemptionClosed: return .closed
            case .ticketNotFound: return .ticketNotFound
            case .couponNotFound: return .couponNotFound
            default: throw TicketStoreError.unknownOutcome(outcome)
            }
        }
        throw TicketStoreError.noRowReturned
    }

    /// Undoes the redemption for `orderID` only.
    func restore(couponID: Int64, userID: String, orderID: String) async throws -> Restore {
        let rows = try await client.query(
            "SELECT outcome, number, code, issued_at FROM restore_ticket(\(couponID), \(userID), \(orderID))", logger: logger)
        for try await (outcome, number, code, issuedAt) in rows.decode((String, Int?, String?, Date?).self) {
            func held() throws -> HeldTicket {
                let ticket = IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
                guard let ticket else { throw TicketStoreError.unknownOutcome(outcome) }
                return HeldTicket(ticket: ticket, redemption: nil)
            }
            switch TicketOutcome(rawValue: outcome) {
            case .restored: return .restored(try held())
            case .notRedeemed: return .notRedeemed(try held())
            case .otherOrder: return .otherOrder
            case .ticketNotFound: return .ticketNotFound
            case .couponNotFound: return .couponNotFound
            default: throw TicketStoreError.unknownOutcome(outcome)
            }
        }
        throw TicketStoreError.noRowReturned
    }
}
