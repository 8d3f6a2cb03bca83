import Foundation

/// A coupon as stored: a fixed number of tickets, optionally sold within a window.
struct Coupon: Sendable, Equatable {
    enum Status: String, Sendable, Codable {
        case scheduled, open, soldOut = "sold_out", ended
    }

    var id: Int64
    var name: String
    var quantity: Int
    var issued: Int
    var startsAt: Date?
    var endsAt: Date?
    /// Tickets can be redeemed until then (always, when nil).
    var redeemUntil: Date?
    var createdAt: Date

    var remaining: Int { quantity - issued }

    func status(at now: Date) -> Status {
        switch SaleWindow.position(of: now, startsAt: startsAt, endsAt: endsAt) {
        case .before: .scheduled
        case .after: .ended
        case .open, .nearAnEdge: issued >= quantity ? .soldOut : .open
        }
    }
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
