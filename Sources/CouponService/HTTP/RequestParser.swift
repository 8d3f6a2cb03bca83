import Foundation
import Hummingbird

/// A coupon to create, validated.
struct NewCoupon: Sendable, Equatable {
    var name: String
    var quantity: Int
    var startsAt: Date?
    var endsAt: Date?
    var redeemUntil: Date?
}

/// Parses and validates request bodies and path parts. Every failure is a 400 that names the field.
enum RequestParser {
    static let maxBodyBytes = 64 * 1024
    /// A grant's 10,000 user ids of up to 64 characters each.
    static let maxGrantBodyBytes = 1024 * 1024
    static let quantityRange = 1...1_000_000
    static let maxNameLength = 200

    static func newCoupon(from body: Data) throws(CouponProblem) -> NewCoupon {
        struct Body: Decodable {
            var name: String
            var quantity: WholeNumber
            var starts_at: String?
            var ends_at: String?
            var redeem_until: String?
        }
        let parsed = try decode(Body.self, from: body)
        let name = parsed.name.trimmed
        // Counted in Unicode scalars of the name as sent, as openapi.yaml's maxLength counts.
        guard !name.isEmpty, parsed.name.unicodeScalars.count <= maxNameLength else {
            throw .invalidRequest("field 'name' must be 1 to \(maxNameLength) characters")
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidRequest("field 'name' must not contain control characters")
        }
        let quantity = try self.quantity(parsed.quantity.value)
        let startsAt = try parsed.starts_at.map { (text) throws(CouponProblem) in try timestamp(text, field: "starts_at") }
        let endsAt = try parsed.ends_at.map { (text) throws(CouponProblem) in try timestamp(text, field: "ends_at") }
        if let startsAt, let endsAt, startsAt >= endsAt {
            throw .invalidRequest("field 'ends_at' must be after 'starts_at'")
        }
        let redeemUntil = try parsed.redeem_until.map { (text) throws(CouponProblem) in try timestamp(text, field: "redeem_until") }
        return NewCoupon(name: name, quantity: quantity, startsAt: startsAt, endsAt: endsAt, redeemUntil: redeemUntil)
    }

    /// The body of `PATCH /v1/coupons/{id}`: a new quantity, window (`starts_at`, `ends_at`) or
    /// `redeem_until`, any of them; for an instant, null clears it and absent leaves it.
    static func couponChange(from body: Data) throws(CouponProblem) -> CouponChange {
        struct Body: Decodable {
            var quantity: WholeNumber?
            /// Absent: unchanged; null: cleared.
            var startsAt: String??
            var endsAt: String??
            var redeemUntil: String??

            enum CodingKeys: String, CodingKey { case quantity, starts_at, ends_at, redeem_until }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                func instant(_ key: CodingKeys) throws -> String?? {
                    guard container.contains(key) else { return nil }
                    return .some(try container.decodeNil(forKey: key) ? nil : container.decode(String.self, forKey: key))
                }
                if container.contains(.quantity) { quantity = try container.decode(WholeNumber.self, forKey: .quantity) }
                startsAt = try instant(.starts_at)
                endsAt = try instant(.ends_at)
                redeemUntil = try instant(.redeem_until)
            }
        }
        let parsed = try decode(Body.self, from: body)
        guard parsed.quantity != nil || parsed.startsAt != nil || parsed.endsAt != nil || parsed.redeemUntil != nil else {
            throw .invalidRequest("the body must set at least one of 'quantity', 'starts_at', 'ends_at' and 'redeem_until'")
        }
        func instant(_ text: String??, field: String) throws(CouponProblem) -> Date?? {
            try text.map { (text) throws(CouponProblem) -> Date? in
                try text.map { (text) throws(CouponProblem) in try timestamp(text, field: field) }
            }
        }
        let quantity = try parsed.quantity.map { (value) throws(CouponProblem) in try self.quantity(value.value) }
        let change = CouponChange(
            quantity: quantity, startsAt: try instant(parsed.startsAt, field: "starts_at"),
            endsAt: try instant(parsed.endsAt, field: "ends_at"), redeemUntil: try instant(parsed.redeemUntil, field: "redeem_until"))
        if case .some(.some(let startsAt)) = change.startsAt, case .some(.some(let endsAt)) = change.endsAt, startsAt >= endsAt {
            throw .invalidRequest("field 'ends_at' must be after 'starts_at'")
        }
        return change
    }

    /// The body of `POST .../redemption`: the order the ticket pays for, 1 to 64 of `[A-Za-z0-9._:@-]`,
    /// and, to hold it for that order rather than redeem it, for how many seconds.
    static func checkout(from body: Data) throws(CouponProblem) -> (orderID: String, holdSeconds: Int?) {
        struct Body: Decodable {
            var order_id: String
            /// Absent: redeem. Present, it must be a number of seconds: `null` is no way to say "redeem".
            var hold_seconds: Int?
            var holdSecondsIsNull = false

            enum CodingKeys: String, CodingKey { case order_id, hold_seconds }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                order_id = try container.decode(String.self, forKey: .order_id)
                hold_seconds = try container.decodeIfPresent(Int.self, forKey: .hold_seconds)
                holdSecondsIsNull = container.contains(.hold_seconds) && hold_seconds == nil
            }
        }
        let parsed = try decode(Body.self, from: body)
        let orderID = try userID(parsed.order_id, field: "field 'order_id'")
        if parsed.holdSecondsIsNull || parsed.hold_seconds.map({ !holdSecondsRange.contains($0) }) == true {
            throw .invalidRequest("field 'hold_seconds' must be an integer from 1 to \(holdSecondsRange.upperBound)")
        }
        return (orderID, parsed.hold_seconds)
    }

    /// How long a checkout may hold a ticket for an order: a second to a day.
    static let holdSecondsRange = 1...86_400

    /// The body of `POST /v1/coupons/{id}/grants`: 1 to 10,000 user ids, in the order to answer them.
    static func grantedUsers(from body: Data) throws(CouponProblem) -> [String] {
        struct Body: Decodable { var user_ids: [String] }
        let users = try decode(Body.self, from: body).user_ids
        guard (1...maxGrant).contains(users.count) else {
            throw .invalidRequest("field 'user_ids' must hold 1 to \(maxGrant) user ids")
        }
        for (index, user) in users.enumerated() { _ = try userID(user, field: "field 'user_ids.\(index)'") }
        return users
    }

    static let maxGrant = 10_000

    /// `limit` from the query: `range.lowerBound` to `range.upperBound`, `fallback` when absent.
    static func limit(_ text: String?, in range: ClosedRange<Int>, fallback: Int) throws(CouponProblem) -> Int {
        guard let text else { return fallback }
        guard let value = text.plainInteger(maxDigits: 5).map(Int.init), range.contains(value) else {
            throw .invalidRequest("query 'limit' must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `after` of the winners' export: a ticket number, 0 or more; 0 when absent.
    static func afterNumber(_ text: String?) throws(CouponProblem) -> Int {
        guard let text else { return 0 }
        guard let value = text.plainInteger(maxDigits: 10).map(Int.init), value <= Int(Int32.max) else {
            throw .invalidRequest("query 'after' must be a ticket number (a 'next' of an earlier page)")
        }
        return value
    }

    /// `after` of a user's tickets: a `next` of an earlier page.
    static func userCursor(_ text: String?) throws(CouponProblem) -> TicketStore.UserCursor? {
        guard let text else { return nil }
        guard text.utf8.count <= 41, let cursor = TicketStore.UserCursor(text) else {
            throw .invalidRequest("query 'after' must be the 'next' of an earlier page")
        }
        return cursor
    }

    /// The body of `POST /v1/coupons/{id}/issue`: the user asking, when the body names one (with a
    /// bearer JWT it may be empty or `{}`: the token names the user).
    static func issueUser(from body: Data) throws(CouponProblem) -> String? {
        if let plain = plainUserID(in: body) { return plain }
        if body.isEmpty { return nil }
        struct Body: Decodable {
            /// Absent: the token's user. Present, it must be a user id: `null` names no one.
            var user_id: String?

            enum CodingKeys: String, CodingKey { case user_id }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                if container.contains(.user_id) { user_id = try container.decode(String.self, forKey: .user_id) }
            }
        }
        return try decode(Body.self, from: body).user_id.map { (user) throws(CouponProblem) in
            try userID(user, field: "field 'user_id'")
        }
    }

    /// `after` of the event feed: the `next` of an earlier page ("P" or "P.K", `EventCursor`); before
    /// the oldest kept event when absent.
    static func eventCursor(_ text: String?) throws(CouponProblem) -> EventCursor {
        guard let text else { return EventCursor(position: 0) }
        guard let cursor = EventCursor(text[...]) else {
            throw .invalidRequest("query 'after' must be the 'next' of an earlier page of events")
        }
        return cursor
    }

    /// `wait` of the event feed: seconds to wait for an event, 0 to 30; 0 when absent.
    static func eventWait(_ text: String?) throws(CouponProblem) -> Duration {
        guard let text else { return .zero }
        guard let seconds = text.plainInteger(maxDigits: 2), (0...30).contains(seconds) else {
            throw .invalidRequest("query 'wait' must be a whole number of seconds from 0 to 30")
        }
        return .seconds(seconds)
    }

    /// The body of `POST /v1/webhooks`: a URL by `webhookURL`, and the event types it wants (absent:
    /// every type; given: 1 or more, each known, none twice).
    static func newWebhook(from body: Data) throws(CouponProblem) -> (url: String, types: [EventType]?) {
        struct Body: Decodable {
            var url: String
            /// Absent: every type. Present, it must be a list: `null` names none.
            var types: [String]?

            enum CodingKeys: String, CodingKey { case url, types }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                url = try container.decode(String.self, forKey: .url)
                if container.contains(.types) { types = try container.decode([String].self, forKey: .types) }
            }
        }
        let webhook = try decode(Body.self, from: body)
        guard webhook.url.utf8.count <= 2_048 else { throw .invalidRequest("field 'url' must be at most 2048 bytes") }
        let authority = webhook.url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst(2).first
        guard !(authority?.contains("@") ?? false) else {
            throw .invalidRequest("field 'url' must not carry credentials: deliveries are signed with the webhook's secret")
        }
        guard !webhook.url.contains("#") else { throw .invalidRequest("field 'url' must not have a fragment") }
        guard webhook.url.wholeMatch(of: webhookURL) != nil else {
            throw .invalidRequest(
                "field 'url' must be http:// or https://, a host name or IPv4 address, an optional port (1-65535), then a path and query of URI characters")
        }
        guard let names = webhook.types else { return (webhook.url, nil) }
        guard !names.isEmpty else { throw .invalidRequest("field 'types' must name at least one event type, or be left out for all") }
        var types: [EventType] = []
        for (index, name) in names.enumerated() {
            guard let type = EventType(rawValue: name) else {
                throw .invalidRequest(
                    "field 'types.\(index)' must be an event type: \(EventType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !types.contains(type) else { throw .invalidRequest("field 'types' names '\(name)' twice") }
            types.append(type)
        }
        return (webhook.url, types)
    }

    /// A webhook's URL, as openapi.yaml's `NewWebhook.url` pattern writes it (`WebhookURLRuleTests`
    /// holds the two together): http or https, a host of name characters, a port of 1 to 65535, a path
    /// and query of RFC 3986 characters; no credentials, no fragment, nothing to escape.
    nonisolated(unsafe) static let webhookURL =
        /[Hh][Tt][Tt][Pp][Ss]?:\/\/[A-Za-z0-9.\-]{1,253}(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([\/?]([A-Za-z0-9._~!$&'()*+,;=:@\/?\-]|%[0-9A-Fa-f]{2})*)?/

    /// A webhook's id in a path.
    static func webhookID(_ text: String?) throws(CouponProblem) -> Int64 {
        guard let id = text?.plainInteger(maxDigits: 18), id > 0 else { throw .webhookNotFound }
        return id
    }

    /// An order's id in a path, as the checkout names it.
    static func pathOrderID(_ text: String?) throws(CouponProblem) -> String {
        try userID(text, field: "order id")
    }

    /// `order_id` of a restore's query: the order whose redemption is undone, so a late cancel of
    /// one order cannot undo another's.
    static func restoredOrder(_ text: String?) throws(CouponProblem) -> String {
        guard let text else { throw .invalidRequest("query 'order_id' is required: the order whose redemption to undo") }
        return try userID(text, field: "query 'order_id'")
    }

    /// The body a sale receives thousands of times a second, `{"user_id":"..."}` with nothing else
    /// (no spaces, a valid id, so no escapes), read without a JSON decoder; nil for any other body,
    /// which the decoder then reads and judges.
    static func plainUserID(in body: Data) -> String? {
        let prefix = #"{"user_id":""#.utf8
        let suffix = #""}"#.utf8
        guard body.count > prefix.count + suffix.count, body.starts(with: prefix), body.suffix(suffix.count).elementsEqual(suffix)
        else { return nil }
        let id = body.dropFirst(prefix.count).dropLast(suffix.count)
        guard isUserID(id) else { return nil }
        return String(decoding: id, as: UTF8.self)
    }

    /// A coupon id from the path: a positive 64-bit integer in plain digits.
    static func couponID(_ text: String?) throws(CouponProblem) -> Int64 {
        guard let id = text?.plainInteger(maxDigits: 19), id > 0 else {
            throw .invalidRequest("coupon id must be a positive 64-bit integer")
        }
        return id
    }

    /// A user id from the path, percent-decoded: "a%3Ab" is the user "a:b".
    static func pathUserID(_ text: String?) throws(CouponProblem) -> String {
        try userID(text.flatMap { $0.removingPercentEncoding })
    }

    /// A user id (and an order id): 1 to 64 characters of `[A-Za-z0-9._:@-]`.
    static func userID(_ text: String?, field: String = "user id") throws(CouponProblem) -> String {
        guard let text, isUserID(text.utf8) else {
            throw .invalidRequest("\(field) must be 1 to \(maxUserIDLength) characters of A-Z a-z 0-9 . _ : @ -")
        }
        return text
    }

    /// The one user id rule (openapi.yaml's `UserID`, held to it by `ProblemCodeTests`).
    static func isUserID(_ bytes: some Collection<UInt8>) -> Bool {
        (1...maxUserIDLength).contains(bytes.count) && bytes.allSatisfy(isUserIDByte)
    }

    static let maxUserIDLength = 64

    static func isUserIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    static func quantity(_ value: Int) throws(CouponProblem) -> Int {
        guard quantityRange.contains(value) else {
            throw .invalidRequest("field 'quantity' must be an integer from 1 to \(quantityRange.upperBound)")
        }
        return value
    }

    /// RFC 3339, with or without fractional seconds, `Z` or an offset.
    static func timestamp(_ text: String, field: String) throws(CouponProblem) -> Date {
        if let date = RFC3339.date(text) { return date }
        throw .invalidRequest("field '\(field)' must be an RFC 3339 timestamp such as 2026-11-24T20:00:00Z")
    }

    /// The body read as strict JSON (`StrictJSON`: UTF-8, RFC 8259, no key twice), then decoded.
    static func decode<T: Decodable>(_ type: T.Type, from body: Data) throws(CouponProblem) -> T {
        do {
            try StrictJSON.check(body)
        } catch {
            switch error {
            case .encoding: throw .invalidRequest("the body must be UTF-8 JSON: \(error)")
            case .syntax: throw .invalidRequest("the body must be a JSON object (RFC 8259): \(error)")
            case .repeatedKey(let key): throw .invalidRequest("field '\(key)' appears twice in the body")
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch let error as DecodingError {
            throw .invalidRequest(describe(error))
        } catch {
            throw .invalidRequest("the body must be a JSON object")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            return "field '\(field(context.codingPath + [key]))' is required"
        case .valueNotFound(_, let context):
            return "field '\(field(context.codingPath))' must not be null"
        case .typeMismatch(let type, let context) where !context.codingPath.isEmpty:
            return "field '\(field(context.codingPath))' must be \(type == String.self ? "a string" : "an integer")"
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            return "field '\(field(context.codingPath))' is invalid: \(context.debugDescription)"
        default:
            return "the body must be a JSON object"
        }
    }
}

/// An integer field that reports 1.5 or 1e30 as a wrong type of that field, not as a broken body.
struct WholeNumber: Decodable {
    var value: Int

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            throw DecodingError.valueNotFound(Int.self, .init(codingPath: decoder.codingPath, debugDescription: "null"))
        }
        guard let value = try? container.decode(Int.self) else {
            throw DecodingError.typeMismatch(Int.self, .init(codingPath: decoder.codingPath, debugDescription: "not an integer"))
        }
        self.value = value
    }
}

extension Request {
    /// The JSON body, at most 64 KiB unless the route says otherwise; anything else is a problem answer.
    func jsonBody(upTo maxBytes: Int = RequestParser.maxBodyBytes) async throws -> Data {
        if let contentType = headers[.contentType], contentType != "application/json" {
            let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard mediaType == "application/json" || mediaType?.hasSuffix("+json") == true else {
                throw CouponProblem.unsupportedMediaType
            }
        }
        // Refused before a byte of the body is read; the connection closes after the answer.
        if headers.contentLength(exceeds: maxBytes) { throw CouponProblem.bodyTooLarge }
        let buffer = try await body.collect(upTo: maxBytes)
        return Data(buffer.readableBytesView)
    }
}

extension StringProtocol {
    /// The value of 1 to `maxDigits` ASCII digits and nothing else (no sign, no spaces), when it fits
    /// in 64 bits: how ids, limits and cursors are read from paths and queries.
    func plainInteger(maxDigits: Int = .max) -> Int64? {
        guard (1...maxDigits).contains(utf8.count), utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int64(self)
    }
}
