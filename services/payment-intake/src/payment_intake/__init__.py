"""payment-intake"""
