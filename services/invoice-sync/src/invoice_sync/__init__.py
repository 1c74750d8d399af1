"""invoice-sync"""
