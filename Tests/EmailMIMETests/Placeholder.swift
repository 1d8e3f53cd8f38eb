import XCTest
final class EmailMIMETestsPlaceholder: XCTestCase {}
