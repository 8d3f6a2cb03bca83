import Foundation
import Synchronization

/// What this instance knows about coupons without asking the database: each coupon's window, whether
/// it is sold out, and, once nothing more can be issued, who holds its tickets.
///
/// It only ever refuses (or repeats a final answer to a holder); every ticket is still issued by the
/// database, so a stale entry can cost a wrong "sold out" for a moment but never one ticket too many.
/// It is trusted only while the listener is connected and has reloaded it after connecting.
public final class CouponCatalogue: Sendable {
    public enum ListenerState: String, Sendable {
        case connecting, connected, reconnecting, stopped
    }

    /// One coupon as last read from the database.
    public struct Entry: Sendable, Equatable {
        public var quantity: Int
        public var issued: Int
        public var startsAt: Date?
        public var endsAt: Date?
        /// Every holder, loaded once the coupon is final (see `isFinal`); nil until then.
        public var holders: [String: IssuedTicket]?

        public init(quantity: Int, issued: Int, startsAt: Date?, endsAt: Date?, holders: [String: IssuedTicket]? = nil) {
            self.quantity = quantity
            self.issued = issued
            self.startsAt = startsAt
            self.endsAt = endsAt
            self.holders = holders
        }

        /// The refusal the database would give a user who holds no ticket, or nil while it would issue.
        func refusal(at now: Date) -> IssueOutcome? {
            if let startsAt, now < startsAt { return .notStarted }
            if let endsAt, now >= endsAt { return .ended }
            return issued >= quantity ? .soldOut : nil
        }

        /// No ticket can be issued until an operator changes the coupon (which notifies): the list
        /// of holders cannot grow.
        public func isFinal(at now: Date) -> Bool { refusal(at: now) != nil }
    }

    /// Negative entries are capped, so probing random ids cannot grow memory without bound.
    static let maxMissing = 100_000

    private struct State {
        var listener = ListenerState.connecting
        var entries: [Int64: Entry] = [:]
        var missing: Set<Int64> = []
        var holdersWanted: Set<Int64> = []
    }
    private let state = Mutex(State())

    public init() {}

    public var listenerState: ListenerState { state.withLock { $0.listener } }

    /// The answer from memory, or nil when only the database can answer.
    public func answer(couponID: Int64, userID: String, now: Date) -> IssueOutcome? {
        state.withLock { state in
            guard state.listener == .connected else { return nil }
            guard let entry = state.entries[couponID] else {
                return state.missing.contains(couponID) ? .couponNotFound : nil
            }
            guard let refusal = entry.refusal(at: now) else { return nil }
            if entry.issued == 0 { return refusal }
            guard let holders = entry.holders else {
                // Final by the clock (the sale ended) since the entry was read: load the holders.
                state.holdersWanted.insert(couponID)
                return nil
            }
            return holders[userID].map { .held($0) } ?? refusal
        }
    }

    /// The database said this coupon does not exist.
    public func learnMissing(couponID: Int64) {
        state.withLock { state in
            // A creation the listener already saw wins over a lookup that raced it.
            guard state.listener == .connected, state.entries[couponID] == nil else { return }
            if state.missing.count >= Self.maxMissing { state.missing.removeAll() }
            state.missing.insert(couponID)
        }
    }

    /// This instance just created or resized the coupon: no need to wait for its notification.
    /// Holders are left to the listener, so a coupon this makes final is answered by the database
    /// until they are loaded.
    public func record(_ coupon: Coupon) {
        update(
            couponID: coupon.id,
            with: Entry(quantity: coupon.quantity, issued: coupon.issued, startsAt: coupon.startsAt, endsAt: coupon.endsAt))
    }

    // MARK: Kept current by the listener

    /// Everything, as read right after (re)connecting: from now on the catalogue is trusted.
    func replaceAll(with entries: [Int64: Entry]) {
        state.withLock { state in
            state.entries = entries
            state.missing.removeAll()
            state.holdersWanted.removeAll()
            state.listener = .connected
        }
    }

    /// One coupon after a notification; nil when it no longer exists.
    func update(couponID: Int64, with entry: Entry?) {
        state.withLock { state in
            state.entries[couponID] = entry
            state.missing.remove(couponID)
            state.holdersWanted.remove(couponID)
        }
    }

    /// Coupons whose holders a request wanted but the catalogue did not have.
    func takeHoldersWanted() -> Set<Int64> {
        state.withLock { state in
            defer { state.holdersWanted.removeAll() }
            return state.holdersWanted
        }
    }

    /// The listener lost its connection: notifications may be missed from here on.
    func distrust(_ listener: ListenerState) {
        state.withLock { $0.listener = listener }
    }
}
