import Foundation

/// A coupon as stored: a fixed number of tickets, optionally sold within a window.
public struct Coupon: Sendable, Equatable {
    public enum Status: String, Sendable, Codable {
        case scheduled, open, soldOut = "sold_out", ended
    }

    public var id: Int64
    public var name: String
    public var quantity: Int
    public var issued: Int
    public var startsAt: Date?
    public var endsAt: Date?
    public var createdAt: Date

    public var remaining: Int { quantity - issued }

    public func status(at now: Date) -> Status {
        switch SaleWindow.position(of: now, startsAt: startsAt, endsAt: endsAt) {
        case .before: .scheduled
        case .after: .ended
        case .open, .nearAnEdge: issued >= quantity ? .soldOut : .open
        }
    }
}

/// What a user holds: one ticket of one coupon.
public struct IssuedTicket: Sendable, Equatable {
    public var couponID: Int64
    public var userID: String
    public var number: Int
    public var code: String
    public var issuedAt: Date
}
