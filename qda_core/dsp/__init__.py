"""(filled in by the driver work)"""
