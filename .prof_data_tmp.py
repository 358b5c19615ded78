import asyncio, cProfile, pstats, sys, time
import uvloop
sys.argv=["x"]
from bench import ice as b
mode = sys.argv[0]
async def main():
    return await b.data_rate(b.ours, 20000)
import os
loop = os.environ.get("LOOP","uvloop")
run = uvloop.run if loop=="uvloop" else asyncio.run
if os.environ.get("PROF"):
    pr=cProfile.Profile(); pr.enable()
    r=run(main()); pr.disable()
    print(r)
    pstats.Stats(pr).sort_stats("tottime").print_stats(18)
else:
    for _ in range(3):
        c=time.process_time(); r=run(main()); print(loop, round(r), "dg/s")
