"""status-projector"""
