import Foundation
import Testing

extension Trait where Self == ConditionTrait {
    /// Marks a heavy test: bursts of thousands of requests, sales that wait for their window, several
    /// instances at once. `scripts/test.sh --quick` (`COUPON_QUICK=1`) skips them.
    package static var heavy: Self {
        .enabled(if: ProcessInfo.processInfo.environment["COUPON_QUICK"] != "1", "heavy; COUPON_QUICK=1 skips it")
    }
}
