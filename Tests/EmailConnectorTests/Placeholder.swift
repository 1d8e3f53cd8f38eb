import XCTest
final class EmailConnectorTestsPlaceholder: XCTestCase {}
