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

/// A ticket as its holder sees it after the sale: redeemed for an order, or not yet.
struct HeldTicket: Sendable, Equatable {
    var ticket: IssuedTicket
    var redemption: Redemption?
}

/// A ticket used at checkout.
struct Redemption: Sendable, Equatable {
    var orderID: String
    var redeemedAt: Date
}

extension IssuedTicket {
    /// The ticket in a row's columns; nil when they are NULL (a row that holds no ticket).
    init?(couponID: Int64, userID: String?, number: Int?, code: String?, issuedAt: Date?) {
        guard let userID, let number, let code, let issuedAt else { return nil }
        self.init(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
    }
}

extension HeldTicket {
    /// The ticket and its redemption in a row's columns; nil when they hold no ticket.
    init?(couponID: Int64, userID: String?, number: Int?, code: String?, issuedAt: Date?, redeemedAt: Date?, orderID: String?) {
        guard let ticket = IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        else { return nil }
        let redemption = orderID.flatMap { orderID in redeemedAt.map { Redemption(orderID: orderID, redeemedAt: $0) } }
        self.init(ticket: ticket, redemption: redemption)
    }
}
