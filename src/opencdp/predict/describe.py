"""What each predicted trait means, in a sentence (the 360° view's tooltips and the model cards)."""

from __future__ import annotations

TRAIT_DESCRIPTIONS: dict[str, str] = {
    "p_alive": "Probability the customer is still active (BG/NBD): the churn-risk baseline",
    "expected_purchases": "Expected number of purchases over the model's horizon (BG/NBD)",
    "expected_order_value": "Expected spend per purchase (Gamma-Gamma)",
    "expected_revenue": "Expected revenue over the model's horizon: CLV (BG/NBD times Gamma-Gamma)",
    "purchase_probability": "Calibrated probability of an order within the model's horizon",
    "purchase_percentile": "Rank of the purchase probability among all profiles (100: most likely)",
    "churn_probability": "Calibrated probability that a past buyer does not order within the horizon",
    "churn_percentile": "Rank of the churn probability among all past buyers (100: most at risk)",
    "preferred_channel": "The channel this person responds to best (smoothed response rate)",
    "channels": "Messages received, responses and ignored-in-a-row, per channel",
    "email_ignored_last": "How many of the latest e-mails got no open or click, in a row",
    "shares": "Times this person shared a product or page",
    "share_visits": "Visits by other people that came from this person's shares",
    "share_signups": "Sign-ups that came from this person's shares",
    "share_orders": "Orders that came from this person's shares",
    "share_revenue": "Revenue of the orders that came from this person's shares",
    "advocacy_score": "How much this person's sharing brings (0 to 100)",
    "advocate": "Shares, and the shares bring visits, sign-ups or orders",
    "sentiment": "Mean sentiment of this person's reviews, tickets and answers (-1 to 1)",
    "sentiment_label": "Positive, neutral or negative, from the sentiment score",
    "interests": "Topics this person writes about most",
    "texts_analysed": "How many texts the interests and sentiment come from",
}
