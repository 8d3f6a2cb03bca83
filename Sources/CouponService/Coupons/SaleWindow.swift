import Foundation

/// The sale window rule, in one place: open from `startsAt` (inclusive) until `endsAt` (exclusive),
/// either end optional. `issue_tickets` applies the same rule with the database's clock under the
/// coupon's lock; `Coupon.status` and the catalogue apply it here.
enum SaleWindow {
    enum Position: Equatable {
        case before, open, after
        /// Within `margin` of an edge: too close for a clock that may be off by that much to tell.
        case nearAnEdge
    }

    static func position(of now: Date, startsAt: Date?, endsAt: Date?, margin: TimeInterval = 0) -> Position {
        if let startsAt {
            if now < startsAt.addingTimeInterval(-margin) { return .before }
            if now < startsAt.addingTimeInterval(margin) { return margin > 0 ? .nearAnEdge : .open }
        }
        if let endsAt {
            if now >= endsAt.addingTimeInterval(margin) { return .after }
            if now >= endsAt.addingTimeInterval(-margin) { return .nearAnEdge }
        }
        return .open
    }
}
