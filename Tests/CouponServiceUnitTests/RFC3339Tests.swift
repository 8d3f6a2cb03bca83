@testable import CouponService
import CouponTestSupport
import Foundation
import Testing

@Suite struct RFC3339Tests {
    @Test(arguments: [0.0, 1_795_737_600.5, 1_795_737_600.999, 1_700_000_000.0001, -1.25, 4_102_444_799.123, 951_782_400.042])
    func matchesFoundation(_ seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        let millisecond = Date(timeIntervalSince1970: (seconds * 1000).rounded(.down) / 1000)
        #expect(RFC3339.string(date) == millisecond.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    @Test func looksLikeTheAPIPromises() {
        #expect(RFC3339.string(Date(timeIntervalSince1970: 1_795_737_600.349)) == "2026-11-27T00:00:00.349Z")
    }

    @Test(arguments: ["2026-11-24T20:00:00Z", "2026-11-24T20:00:00.5+01:00", "1999-12-31t23:59:59.999999z",
                      "1778-09-14T13:30:43-12:35", "2000-02-29T00:00:00+14:30", "2024-06-30T12:00:00-09:15"])
    func readsWhatFoundationReads(_ text: String) throws {
        let ours = try #require(RFC3339.date(text))
        let foundation = try #require(try? Date(
            text.uppercased(), strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: text.contains("."))))
        #expect(abs(ours.timeIntervalSince1970 - foundation.timeIntervalSince1970) < 0.001)
    }

    @Test func readsOffsetsAndLeapSecondsTheRFCAllows() throws {
        // Found by schemathesis: an offset of -21:51 is RFC 3339, and Foundation turns it down.
        let far = try #require(RFC3339.date("2355-07-28T16:50:55-21:51"))
        #expect(far == RFC3339.date("2355-07-29T14:41:55Z"))
        #expect(RFC3339.date("2016-12-31T23:59:60Z") == RFC3339.date("2017-01-01T00:00:00Z"))
        // The proleptic Gregorian calendar, as RFC 3339 says (Foundation switches to Julian before 1582).
        #expect(RFC3339.date("0001-01-01T00:00:00Z")?.timeIntervalSince1970 == -62_135_596_800)
    }

    @Test(arguments: ["", "2026-11-24", "2026-11-24 20:00:00Z", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
                      "2026-11-24T24:00:00Z", "2026-11-24T20:00:00", "2026-11-24T20:00:00+24:00", "2026-11-24T20:00:00.Z",
                      "2026-11-24T20:00:00Z ", "+2026-11-24T20:00:00Z", "2026-11-24T20:00:00+0100",
                      // Outside years 0001-9999 once in UTC (found by hand: the first trapped the writer).
                      "0000-01-01T00:00:00+00:01", "0000-12-31T23:59:59Z", "0001-01-01T00:00:00+00:01",
                      "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:60Z"])
    func refusesWhatIsNot(_ text: String) {
        #expect(RFC3339.date(text) == nil)
    }

    @Test func theBoundsOfFourDigitYearsReadAndWriteBack() throws {
        for text in ["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
            #expect(RFC3339.string(try #require(RFC3339.date(text))) == text)
        }
    }

    /// No `Date` traps the writer, and whatever it writes reads back.
    @Test(arguments: [-1e300, -62_135_596_800.5, -1e12, 253_402_300_800.0, 1e13, 1e300,
                      .infinity, -.infinity, .nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude])
    func anyDateIsWrittenAsOneTheReaderTakes(_ seconds: Double) {
        let text = RFC3339.string(Date(timeIntervalSince1970: seconds))
        #expect(RFC3339.date(text) != nil, "\(seconds) was written as \(text)")
    }
}
