#!/usr/bin/env python3
"""An independent reference for PackedDataset::EpochOrder, which dataset_test.cc's golden orders
come from: mt19937_64 written out from the C++ standard's definition (checked against the
standard's 10000th-output value), the same splitmix64 seed mix, and the same Fisher-Yates with
rejection sampling. Run it to regenerate the goldens: python3 epoch_order_reference.py
"""
M=(1<<64)-1
class MT64:
    def __init__(self, seed):
        self.mt=[0]*312; self.mt[0]=seed&M
        for i in range(1,312):
            self.mt[i]=(6364136223846793005*(self.mt[i-1]^(self.mt[i-1]>>62))+i)&M
        self.i=312
    def __call__(self):
        if self.i>=312:
            for k in range(312):
                x=(self.mt[k]&0xFFFFFFFF80000000)|(self.mt[(k+1)%312]&0x7FFFFFFF)
                xa=x>>1
                if x&1: xa^=0xB5026F5AA96619E9
                self.mt[k]=self.mt[(k+156)%312]^xa
            self.i=0
        y=self.mt[self.i]; self.i+=1
        y^=(y>>29)&0x5555555555555555
        y^=(y<<17)&0x71D67FFFEDA60000
        y^=(y<<37)&0xFFF7EEE000000000
        y^=y>>43
        return y&M
def mix(x):
    x=(x+0x9e3779b97f4a7c15)&M
    x=((x^(x>>30))*0xbf58476d1ce4e5b9)&M
    x=((x^(x>>27))*0x94d049bb133111eb)&M
    return x^(x>>31)
def order(seed,epoch,n):
    o=list(range(n)); r=MT64(mix(seed^mix(epoch)))
    for i in range(n-1,0,-1):
        b=i+1; lim=M-M%b
        while True:
            v=r()
            if v<lim: break
        j=v%b; o[i],o[j]=o[j],o[i]
    return o
r=MT64(5489)
for _ in range(9999): r()
assert r()==9981545732273789042
for s,e,n in [(42,0,10),(42,1,10),(0,0,16)]: print(s,e,n,order(s,e,n))
