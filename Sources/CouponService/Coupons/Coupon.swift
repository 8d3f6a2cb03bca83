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
