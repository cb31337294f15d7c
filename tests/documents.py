"""GraphQL documents the tests send, as the SPA and the mobile app would."""

PAYMENT_FIELDS = """
  id status purpose provider mock captureMethod payerId payeeId failureCode failureMessage paidAt createdAt
  amount { amount currency } capturedAmount { amount currency } refundedAmount { amount currency }
  platformFee { amount currency } taxAmount { amount currency } payeeAmount { amount currency }
  enroll { id status title } package { code credits } refunds { id amount { amount currency } status reason }
"""

CREATE_ENROLL = """
mutation($providerId: ID!, $title: String!, $amount: String!, $currency: String!) {
  createEnroll(input: {providerId: $providerId, title: $title, price: {amount: $amount, currency: $currency}}) {
    enroll { id status clientId providerId title price { amount currency } payment { id } }
    errors { code field message }
  }
}
"""

CREATE_INTENT = (
    """
mutation($input: CreateIntentInput!) {
  createIntent(input: $input) {
    payment { """
    + PAYMENT_FIELDS
    + """ }
    clientSecret checkoutUrl confirmationUrl
    errors { code field message }
  }
}
"""
)

CONFIRM = (
    """
mutation($paymentId: ID!, $paymentMethod: String) {
  confirm(paymentId: $paymentId, paymentMethod: $paymentMethod) {
    payment { """
    + PAYMENT_FIELDS
    + """ }
    errors { code field message }
  }
}
"""
)

REFUND = (
    """
mutation($input: RefundInput!) {
  refund(input: $input) {
    refund { id paymentId status reason amount { amount currency } }
    payment { """
    + PAYMENT_FIELDS
    + """ }
    errors { code field message }
  }
}
"""
)

PAYMENT = "query($id: ID!) { payment(id: $id) { " + PAYMENT_FIELDS + " } }"

PAYMENTS = (
    """
query($first: Int, $after: String, $status: PaymentStatus, $purpose: PaymentPurpose) {
  payments(first: $first, after: $after, status: $status, purpose: $purpose) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { """
    + PAYMENT_FIELDS
    + """ } }
  }
}
"""
)

ENROLL = "query($id: ID!) { enroll(id: $id) { id status title clientId providerId price { amount currency } payment { id status } } }"

ENROLLS = """
query($first: Int, $after: String, $status: EnrollStatus) {
  enrolls(first: $first, after: $after, status: $status) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id status title payment { id status } } }
  }
}
"""

PACKAGES = "{ packages { code name credits price { amount currency } unitPrice } }"

ENROLL_STEP_FIELDS = """
    enroll { id status }
    payment { id status capturedAmount { amount } refundedAmount { amount } platformFee { amount } taxAmount { amount } payeeAmount { amount } }
    errors { code field message }
"""
ACCEPT_ENROLL = "mutation($id: ID!) { acceptEnroll(enrollId: $id) { " + ENROLL_STEP_FIELDS + " } }"
MARK_ENROLL_READY = "mutation($id: ID!) { markEnrollReady(enrollId: $id) { " + ENROLL_STEP_FIELDS + " } }"
CONFIRM_ENROLL = "mutation($id: ID!) { confirmEnroll(enrollId: $id) { " + ENROLL_STEP_FIELDS + " } }"
CANCEL_ENROLL = (
    "mutation($id: ID!, $reason: String) { cancelEnroll(enrollId: $id, reason: $reason) { "
    + ENROLL_STEP_FIELDS
    + " } }"
)

BALANCES = """
{ balances { credits creditLots { id } accounts { currency available { amount currency } pending { amount } paidOut { amount } } } }
"""

PLATFORM_BALANCES = """
{ platformBalances { currency revenue { amount } tax { amount } providerPayable { amount } escrow { amount }
  payoutsInFlight { amount } providerCash { amount } } }
"""

SPEND_CREDITS = """
mutation($input: SpendCreditsInput!) {
  spendCredits(input: $input) {
    transaction { id type credits balanceAfter reference expiresAt createdAt }
    balance { credits creditLots { id credits remaining expiresAt paymentId } }
    errors { code field message }
  }
}
"""

CREDIT_TRANSACTIONS = """
query($first: Int, $after: String) {
  creditTransactions(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id type credits balanceAfter reference expiresAt } }
  }
}
"""

CREDIT_BALANCE = "{ balances { credits creditLots { id credits remaining expiresAt paymentId } } }"

REGISTER_PAYOUT_ACCOUNT = """
mutation($input: RegisterPayoutAccountInput!) {
  registerPayoutAccount(input: $input) { payoutAccount { id provider status currency externalAccountId } errors { code field message } }
}
"""
VERIFY_PAYOUT_ACCOUNT = (
    "mutation($id: ID!) { verifyPayoutAccount(id: $id) { payoutAccount { id status } errors { code message } } }"
)
WITHDRAWAL_FIELDS = (
    "withdrawal { id providerId status reason failureReason amount { amount currency } processedAt }"
    " errors { code field message }"
)
REQUEST_WITHDRAWAL = (
    "mutation($input: RequestWithdrawalInput!) { requestWithdrawal(input: $input) { " + WITHDRAWAL_FIELDS + " } }"
)
APPROVE_WITHDRAWAL = "mutation($id: ID!) { approveWithdrawal(id: $id) { " + WITHDRAWAL_FIELDS + " } }"
REJECT_WITHDRAWAL = (
    "mutation($id: ID!, $reason: String) { rejectWithdrawal(id: $id, reason: $reason) { " + WITHDRAWAL_FIELDS + " } }"
)
WITHDRAWALS = "query($status: WithdrawalStatus) { withdrawals(status: $status) { totalCount edges { node { id status amount { amount } } } } }"
WITHDRAWAL_FAILURES = (
    "query { withdrawals { edges { node { id status reason failureReason amount { amount currency } } } } }"
)
