
extension Array {
    /// (matching, rest), each in the original order.
    func partitioned(by matches: (Element) -> Bool) -> ([Element], [Element]) {
        var yes: [Element] = []
        var no: [Element] = []
        for element in self { if matches(element) { yes.append(element) } else { no.append(element) } }
        return (yes, no)
    }
}
