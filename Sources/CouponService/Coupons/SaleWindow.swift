import Foundation
import Synchronization

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

/// The database's time as this instance best knows it: the local clock plus an offset measured
/// against PostgreSQL's `clock_timestamp()`.
///
/// Sale windows are the database's: `issue_tickets` judges them with its own clock. An instance whose
/// clock runs behind or ahead would otherwise refuse, from memory, a sale the database has opened.
final class DatabaseClock: Sendable {
    /// What the clock says now, and how far from the database's time that may be.
    struct Reading: Sendable, Equatable {
        var now: Date
        /// Half the round trip of the measurement behind the offset (infinite before the first one).
        var uncertainty: TimeInterval
    }

    /// A measurement slower than this round trip says too little about when the database read its
    /// clock, so it is not used.
    static let maxRoundTrip: TimeInterval = 0.1

    private struct Measurement {
        var offset: TimeInterval = 0
        var uncertainty: TimeInterval = .infinity
    }
    private let measurement = Mutex(Measurement())
    private let localClock: @Sendable () -> Date

    /// `localClock` is this machine's wall clock; tests pass a skewed one.
    init(localClock: @escaping @Sendable () -> Date = { Date() }) {
        self.localClock = localClock
    }

    func reading() -> Reading {
        let measured = measurement.withLock { $0 }
        return Reading(now: localClock().addingTimeInterval(measured.offset), uncertainty: measured.uncertainty)
    }

    /// Database time minus local time, in seconds; nil before the first usable measurement.
    var offset: TimeInterval? {
        measurement.withLock { $0.uncertainty.isFinite ? $0.offset : nil }
    }

    /// Asks `databaseTime` for the database's clock and keeps the offset if the round trip was short.
    /// Returns whether it was kept.
    @discardableResult
    func measure(_ databaseTime: () async throws -> Date) async throws -> Bool {
        let sent = localClock()
        let database = try await databaseTime()
        let received = localClock()
        let roundTrip = received.timeIntervalSince(sent)
        guard roundTrip >= 0, roundTrip <= Self.maxRoundTrip else { return false }
        let midpoint = sent.addingTimeInterval(roundTrip / 2)
        measurement.withLock {
            $0 = Measurement(offset: database.timeIntervalSince(midpoint), uncertainty: roundTrip / 2)
        }
        return true
    }
}
